"""`envfactory export --format openai-ft`: OpenAI's fine-tuning format exactly, and a checker of its documented
rules that catches what the plain `openai` export (arguments as objects, `name` on tool messages) breaks."""
from __future__ import annotations

import copy
import json

import pytest

from tests.seeds import kept_seeds
from envfactory.cli.main import main
from envfactory.data.exports import check_openai_ft, to_openai, to_openai_ft
from envfactory.data.store import RecordStore
from envfactory.graphs.querygen import QueryGenContext, make_graph


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("ft") / "records.sqlite"
    make_graph().invoke({"envs": ["library"], "seeds": kept_seeds("library", 2, 3)},
                        context=QueryGenContext(rollouts=1, store_path=str(path)))
    return path


def test_the_export_command_writes_lines_that_follow_openais_rules(store, tmp_path, capsys):
    assert main(["export", "--format", "openai-ft", "--store", str(store), "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = [json.loads(line) for line in (tmp_path / "envfactory.openai-ft.jsonl").read_text().splitlines()]
    assert summary["rows"] == len(lines) == 3 and not summary["skipped"]
    # what made each line (tiers: scripted rows are labelled) sits in a sidecar, line for line
    meta = [json.loads(line) for line in (tmp_path / "envfactory.openai-ft.metadata.jsonl").read_text().splitlines()]
    assert len(meta) == len(lines) and all(m["record_key"] and "tiers" in m for m in meta)
    for line in lines:
        assert check_openai_ft(line) == []
        assert set(line) == {"messages", "tools"}
        calls = [c for m in line["messages"] for c in m.get("tool_calls", [])]
        assert calls and all(isinstance(c["function"]["arguments"], str) for c in calls)
        assert all(isinstance(json.loads(c["function"]["arguments"]), dict) for c in calls)
        assert all(set(m) == {"role", "tool_call_id", "content"} for m in line["messages"] if m["role"] == "tool")
        assert line["messages"][-1]["role"] == "assistant"
    # what made each row (tiers, models, prompt versions) sits in a line-aligned side file, not in the line
    side = [json.loads(x) for x in (tmp_path / "envfactory.openai-ft.metadata.jsonl").read_text().splitlines()]
    assert len(side) == len(lines) and all("offline" in m and m["record_key"] for m in side)


def test_the_checker_names_each_broken_rule(store):
    record = next(RecordStore(store).query(status="accepted"))
    # the openai rows in the object form HF chat templates also take, with the tool name on results: two broken rules
    plain = to_openai(record, arguments_as="dict")[0]
    problems = check_openai_ft(plain)
    assert any("(tool): keys outside the documented schema ['name']" in p for p in problems)
    good = to_openai_ft(record)[0]
    assert check_openai_ft(good) == []

    def broken(change):
        line = copy.deepcopy(good)
        change(line)
        return check_openai_ft(line)

    call_at = next(i for i, m in enumerate(good["messages"]) if m.get("tool_calls"))

    def args_as_object(line):
        call = line["messages"][call_at]["tool_calls"][0]["function"]
        call["arguments"] = json.loads(call["arguments"])
    assert any("must be a JSON string, not dict" in p for p in broken(args_as_object))
    assert any("unknown top-level keys ['id']" in p for p in broken(lambda l: l.update(id=1)))
    assert any("are not valid JSON" in p for p in broken(
        lambda l: l["messages"][call_at]["tool_calls"][0]["function"].update(arguments="{oops")))
    assert any("must encode a JSON object" in p for p in broken(
        lambda l: l["messages"][call_at]["tool_calls"][0]["function"].update(arguments="[1]")))
    assert any("not among the line's tools" in p for p in broken(
        lambda l: l["messages"][call_at]["tool_calls"][0]["function"].update(name="nope")))
    assert any("never get a tool result" in p or "have no result" in p for p in broken(
        lambda l: l["messages"].__delitem__(call_at + 1)))
    assert any("weight must be 0 or 1" in p for p in broken(lambda l: l["messages"][-1].update(weight=2)))
    assert any("at least one assistant message" in p for p in broken(
        lambda l: l.update(messages=[m for m in l["messages"] if m["role"] == "user"][:1])))
    assert any("1-64 letters" in p for p in broken(lambda l: l["tools"][0]["function"].update(name="a b")))
    assert any("unknown role 'function'" in p for p in broken(lambda l: l["messages"].append({"role": "function"})))
