"""Tool-graph confirmation and chain sampling on a tiny notebook package (tests/fixtures/notes):
tools that need an optional value to do anything, and tools taking two ids of the same kind."""
from __future__ import annotations

from pathlib import Path

import pytest

from envfactory.envs import Environment
from envfactory.envs.chains.confirm import build_tool_graph

NOTES = Path(__file__).parent / "fixtures" / "notes"


@pytest.fixture(scope="module")
def notes_graph():
    return build_tool_graph(Environment.load(NOTES, trust=True))


def _edge(tg, producer, consumer, param):
    found = [d for u, v, d in tg.edges() if (u, v, d["param"]) == (producer, consumer, param)]
    assert len(found) == 1, found
    return found[0]


def test_edits_that_need_an_optional_value_get_confirmed(notes_graph):
    # edit_note(note_id, title=None, body=None) refuses a call with only the id: confirmation must
    # retry with optional values, or the edit never gets a confirmed producer
    for producer in ("create_note", "list_notes"):
        edge = _edge(notes_graph, producer, "edit_note", "note_id")
        assert edge["confirmed"], edge["evidence"]
        chain, arguments = edge["evidence"]["chain"], edge["evidence"]["arguments"]
        edit_args = arguments[chain.index("edit_note")]
        assert {"title", "body"} & set(edit_args)


def test_plain_confirmation_alone_cannot_confirm_such_edits():
    from envfactory.envs.chains.confirm import confirm_edges

    tg = build_tool_graph(Environment.load(NOTES, trust=True), confirm=False)
    confirm_edges(tg, optional_attempts=0)
    edge = _edge(tg, "create_note", "edit_note", "note_id")
    assert not edge["confirmed"] and "give at least one field" in edge["evidence"]


def test_two_ids_of_one_kind_get_distinct_values(notes_graph):
    # link_notes(note_id, other_id) both bind to notes[].note_id (list_notes) or to the one note_id
    # create_note returns: the sampler must give them different notes, or every link is a self-link
    for producer in ("create_note", "list_notes"):
        for param in ("note_id", "other_id"):
            edge = _edge(notes_graph, producer, "link_notes", param)
            assert edge["confirmed"], edge["evidence"]
    from envfactory.envs.chains.sampling import ChainSampler, GoldTrajectory, SamplerConfig

    sampler = ChainSampler(notes_graph, SamplerConfig(min_length=2, max_length=4))
    links = [c for seed in range(40) if isinstance(t := sampler.sample(seed), GoldTrajectory)
             for c in t.calls if c.tool == "link_notes"]
    assert len(links) >= 5
    assert all(c.arguments["note_id"] != c.arguments["other_id"] for c in links)


def test_pick_avoids_values_already_given_but_keeps_rows_together():
    import random

    from envfactory.envs.chains.sampling import _pick

    out = {"notes": [{"note_id": 1, "title": "a"}, {"note_id": 2, "title": "b"}, {"note_id": 3, "title": "c"}]}
    for seed in range(20):
        picks: dict = {}
        rng = random.Random(seed)
        first = _pick(out, "notes[].note_id", picks, 0, rng)[0]
        title = _pick(out, "notes[].title", picks, 0, rng)[0]
        assert {"a": 1, "b": 2, "c": 3}[title] == first  # an id and its title come from one element
        second = _pick(out, "notes[].note_id", picks, 0, rng, avoid=[first])[0]
        assert second in (1, 2, 3) and second != first
    # one element only: nothing else to give, the same value comes back (the tool will judge it)
    assert _pick({"notes": [{"note_id": 7}]}, "notes[].note_id", {}, 0, random.Random(0), avoid=[7])[0] == 7
