"""Selectors (issue 16): a value taken from one element of a listed array is only drawn from an
element the user can single out (a field value it alone has, two fields together, an order), and
the selector is kept with the gold call; elements nothing singles out are never picked."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from envfactory.envs import Environment
from envfactory.envs.chains.confirm import build_tool_graph
from envfactory.envs.chains.sampling import ChainSampler, Discarded, GoldTrajectory, SamplerConfig, _pick
from envfactory.envs.chains.selectors import selectors_for

NOTES = Path(__file__).parent / "fixtures" / "notes"


def test_two_equal_looking_items_and_one_unique_title_get_a_title_selector():
    items = [{"campaign_id": 1, "subject": "Recap", "status": "draft", "audience_id": 3},
             {"campaign_id": 2, "subject": "Recap", "status": "draft", "audience_id": 3},
             {"campaign_id": 3, "subject": "Trail weekend sign-ups", "status": "draft", "audience_id": 3}]
    found = selectors_for(items)
    assert found[0] is None and found[1] is None
    assert found[2].kind == "field" and found[2].fields == ["subject"] and found[2].values == ["Trail weekend sign-ups"]
    out = {"campaigns": items}
    for seed in range(30):
        value, selector, unsingled = _pick(out, "campaigns[].campaign_id", {}, 1, random.Random(seed))
        assert value == 3 and unsingled == 0
        assert selector.call == 1 and selector.array == "campaigns[]" and selector.among == 3
        assert selector.text == 'the campaign whose subject is "Trail weekend sign-ups"'


def test_order_pair_and_only_selectors():
    orders = [{"order_id": 1, "status": "shipped", "total": 10.0, "placed_at": "2026-01-02"},
              {"order_id": 2, "status": "shipped", "total": 12.5, "placed_at": "2026-01-02"},
              {"order_id": 3, "status": "shipped", "total": 10.0, "placed_at": "2026-01-05"}]
    found = selectors_for(orders)
    assert found[2].kind == "order" and found[2].fields == ["placed_at"] and found[2].order == "max"
    assert found[1].kind == "field" and found[1].fields == ["total"]  # the only 12.5
    assert found[0].kind == "fields" and found[0].fields == ["placed_at", "total"]  # neither alone
    assert found[0].values == ["2026-01-02", 10.0]
    _, sel, _ = _pick({"orders": orders}, "orders[].order_id", {(0, "orders"): 2}, 0, random.Random(0))
    assert sel.text == "the order with the latest placed at"
    homes = [{"home_id": 1, "city": "Oslo", "kind": "flat"}, {"home_id": 2, "city": "Oslo", "kind": "house"},
             {"home_id": 3, "city": "Rome", "kind": "flat"}, {"home_id": 4, "city": "Rome", "kind": "house"}]
    pair = selectors_for(homes)
    assert all(p.kind == "fields" and p.fields == ["city", "kind"] for p in pair)
    only = _pick({"lots": [{"lot_id": 5, "vaccine": "flu"}]}, "lots[].lot_id", {}, 0, random.Random(0))
    assert only[0] == 5 and only[1].kind == "only"


def test_a_list_where_nothing_singles_an_item_out_is_never_picked():
    same = {"notes": [{"note_id": i, "title": "Same", "pinned": False} for i in range(1, 5)]}
    for seed in range(10):
        value, selector, unsingled = _pick(same, "notes[].note_id", {}, 0, random.Random(seed))
        assert value is None and selector is None and unsingled == 4
    # ids and flags never single anything out
    assert selectors_for([{"note_id": 1, "flag": True}, {"note_id": 2, "flag": False}]) == [None, None]


def _notes_with_titles(tmp_path: Path, titles: list[str]) -> Path:
    pkg = tmp_path / "notes"
    shutil.copytree(NOTES, pkg)
    seed = json.loads((pkg / "seed.json").read_text())
    for note, title in zip(seed["notes"], titles):
        note["title"] = title
    (pkg / "seed.json").write_text(json.dumps(seed))
    return pkg


def _sample(pkg: Path, seeds: range):
    sampler = ChainSampler(build_tool_graph(Environment.load(pkg, trust=True)), SamplerConfig(min_length=2, max_length=4))
    return [sampler.sample(s) for s in seeds]


def test_chains_redraw_to_an_element_with_a_selector_and_record_it(tmp_path):
    out = _sample(_notes_with_titles(tmp_path, ["Groceries", "Groceries", "Garden", "Travel"]), range(60))
    kept = [t for t in out if isinstance(t, GoldTrajectory)]
    from_list = [(t, c, p) for t in kept for c in t.calls for p, b in c.bindings.items()
                 if b.source == "call" and "[]" in (b.field or "")]
    assert len(from_list) >= 5
    for t, call, param in from_list:
        assert call.arguments[param] not in (1, 2)      # the two "Groceries" notes look the same
        sel = call.selectors[param]
        assert sel.kind == "field" and sel.values[0] != "Groceries" and sel.among >= 4  # (+ notes the chain created)
    assert sum(t.selector_redraws for t in kept) >= 1  # some first draws fell on a "Groceries" note
    # the selector survives the trip through JSON (graph state, records)
    again = GoldTrajectory.model_validate_json(from_list[0][0].model_dump_json())
    assert again.calls == from_list[0][0].calls


def test_chains_without_any_selector_are_dropped_with_the_reason(tmp_path):
    out = _sample(_notes_with_titles(tmp_path, ["Same"] * 4), range(60))
    dropped = [d for d in out if isinstance(d, Discarded) and d.reason.startswith("no selector")]
    assert dropped, [d.reason for d in out if isinstance(d, Discarded)]
    assert "list_notes" in dropped[0].reason and "4 note elements" in dropped[0].reason
    kept = [t for t in out if isinstance(t, GoldTrajectory)]
    assert kept  # chains fed by create_note (one id, no list) are still sampled
    assert not any("[]" in (b.field or "") for t in kept for c in t.calls for b in c.bindings.values())
