"""The TRL environment wrapper (no torch): tools as typed methods, isolated episodes per rollout,
our composite reward, and the ``trl`` export rows it resets from."""
from __future__ import annotations

import ast
import inspect
import json
import typing

import pytest

from tests.seeds import kept_seeds
from envfactory.cli.main import main
from envfactory.data.exports.trl_env import (check_trl, environment_class, environment_factories, make_reward_func,
                                             to_trl)
from envfactory.data.store import RecordStore
from envfactory.graphs.querygen import QueryGenContext, make_graph


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("trl") / "records.sqlite"
    make_graph().invoke({"envs": ["library"], "seeds": kept_seeds("library", 2, 4)},
                        context=QueryGenContext(rollouts=1, store_path=str(path)))
    return path


@pytest.fixture(scope="module")
def library_cls():
    return environment_class("library")


@pytest.fixture(scope="module")
def rows(store):
    """The rows of the three-turn record (writes in its first and last turns)."""
    record = next((r for r in RecordStore(store).query(status="accepted") if len(r.turns) == 3), None)
    assert record is not None, "no three-turn record among the accepted ones"
    return to_trl(record)


def _play_gold(env, row):
    for call in json.loads(row["gold_calls"]):
        out = getattr(env, call["name"])(**call["arguments"])
        assert "error" not in json.loads(out), out


def test_public_methods_are_the_tools_with_typed_signatures(library_cls, library_env):
    public = {name for name, _ in inspect.getmembers(library_cls, predicate=inspect.isfunction) if not name.startswith("_")}
    assert public == set(library_env.tools) | {"reset"}
    sig = inspect.signature(library_cls().checkout_book)
    assert [(p.name, p.annotation, p.default is p.empty) for p in sig.parameters.values()] == [
        ("member_id", int, True), ("book_id", int, True)]
    search = inspect.signature(library_cls.search_books).parameters
    assert typing.get_args(search["genre"].annotation) == tuple(
        library_env.tools["search_books"].spec.input_schema["properties"]["genre"]["enum"])
    assert search["available_only"].annotation is bool and search["available_only"].default is None
    doc = library_cls.search_books.__doc__
    assert doc.startswith(library_env.tools["search_books"].spec.description.split(".")[0])
    assert "\nArgs:\n" in doc and "    limit: Page size (1 to 50; default 10)" in doc


def test_each_rollout_gets_its_own_episode_and_reset_restores_the_row_state(library_cls, library_env, rows):
    a, b = library_cls(), library_cls()
    assert a.reset(**rows[0]) is None and b.reset(**rows[0]) is None   # the prompt carries the query
    before = b._episode.state_hash()
    _play_gold(a, rows[0])
    assert a._episode.state_hash() != before and b._episode.state_hash() == before == library_env.initial_hash
    a.reset(**rows[0])
    assert a._episode.state_hash() == library_env.initial_hash and a._calls() == []
    # a later turn starts where the earlier turns' gold calls left the state
    a.reset(**rows[2])
    assert a._episode.state_hash() != library_env.initial_hash and a._calls() == []
    no_prompt = {k: v for k, v in rows[2].items() if k != "prompt"}
    assert a.reset(**no_prompt) == rows[2]["query"]


def test_reward_is_our_verifier_over_the_calls_the_episode_received(library_cls, rows):
    batches = []
    reward = make_reward_func(batches.append)
    write_turn = rows[2]                              # list_member_loans, get_book, cancel_hold
    read_turn = {**write_turn, "gold_calls": json.dumps(json.loads(write_turn["gold_calls"])[:2])}  # the two reads
    envs = [library_cls() for _ in range(4)]
    for env in envs[:3]:
        env.reset(**read_turn)
    envs[3].reset(**write_turn)
    _play_gold(envs[0], read_turn)                     # the gold calls: full score
    first, second = json.loads(read_turn["gold_calls"])
    getattr(envs[1], first["name"])(**first["arguments"])   # the first gold read, then two wrong reads
    for book_id in [b for b in range(1, 5) if b != second["arguments"]["book_id"]][:2]:
        envs[1].get_book(book_id=book_id)
    scores = reward(completions=[[{"role": "assistant", "content": ""}]] * 4, environments=envs)
    # a turn that only reads: R = 0.5 T + 0.5 A - L - F with the answer term A = T (no write made);
    # 1 of 3 calls matches 1 of 2 gold calls: T = F1(1/3, 1/2) = 0.4, one call too many: L = 0.05
    assert scores == [1.0, pytest.approx(0.35), 0.0, 0.0]   # doing nothing earns nothing, on reads and writes
    assert batches[0][0]["matched_calls"] == 2 and [b["calls"] for b in batches[0]] == [2, 3, 0, 0]


def test_errors_come_back_as_json_text_and_cost_format_points(library_cls, rows):
    env = library_cls()
    env.reset(**rows[0])
    missing = json.loads(env.get_book())
    assert missing["kind"] == "invalid_arguments" and "book_id" in missing["error"]
    assert json.loads(env.get_book(book_id=10**6))["kind"] == "domain"
    assert json.loads(env.checkout_book(member_id=1, book_id=2, ghost=3))["kind"] == "invalid_arguments"
    reward = make_reward_func()
    [clean] = reward(completions=[[{"role": "assistant", "content": ""}]], environments=[env])
    env.reset(**rows[0])
    env.get_book()
    [with_bad] = reward(completions=[[
        {"role": "assistant", "content": "<tool_call>\n{not json\n</tool_call>"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "ghost", "arguments": {}}}]}]],
        environments=[env])
    assert env._score(2).format_penalty == pytest.approx(0.15)  # one invalid call reached the env, two never did
    assert with_bad <= clean


def test_unscorable_rollouts_give_none_not_zero(library_cls, library_env, rows):
    env = library_cls()
    reward = make_reward_func()
    broken_gold = {**rows[0], "gold_calls": json.dumps([{"name": "get_book", "arguments": {"book_id": 10**6}}])}
    env.reset(**broken_gold)
    assert reward(completions=[[]], environments=[env]) == [None]
    env.reset(**{**rows[0], "initial_state_hash": "0" * 64})
    assert reward(completions=[[]], environments=[env]) == [None] and "initial state" in env._score().failure
    env.reset(**rows[0])                               # the instance recovers on the next row
    _play_gold(env, rows[0])
    assert reward(completions=[[]], environments=[env]) == [1.0]


def test_rows_one_per_turn_pass_the_checker(rows):
    assert [r["turn"] for r in rows] == [0, 1, 2] and all(check_trl(r) == [] for r in rows)
    assert rows[2]["prompt"][-1] == {"role": "user", "content": rows[2]["query"]}
    assert len(json.loads(rows[2]["prefix_calls"])) == sum(len(json.loads(r["gold_calls"])) for r in rows[:2])
    calls = [c for m in rows[1]["prompt"] for c in m.get("tool_calls") or []]
    assert calls and all(isinstance(c["function"]["arguments"], str) for c in calls)
    assert check_trl({**rows[0], "environment": "library+commerce"})
    assert any("gold_calls" in p for p in check_trl({**rows[0], "gold_calls": "{"}))
    assert any("end with the user" in p for p in check_trl({**rows[0], "prompt": rows[0]["prompt"][:1] + [
        {"role": "assistant", "content": "hi"}]}))


def test_export_command_writes_rows_and_a_trainer_script(store, tmp_path, capsys):
    assert main(["export", "--format", "trl", "--store", str(store), "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in (tmp_path / "envfactory.trl.jsonl").read_text().splitlines()]
    turns = sum(len(r.turns) for r in RecordStore(store).query(status="accepted"))  # one row per turn
    assert summary["rows"] == len(rows) == turns > 0 and {r["environment"] for r in rows} == {"library"}
    script = (tmp_path / "envfactory.trl_train.py").read_text()
    ast.parse(script)
    assert "environment_factories(['library'])" in script and "envfactory.trl.jsonl" in script


def test_factories_route_by_environment_name(library_cls):
    factories = environment_factories(["library", "commerce"])
    assert set(factories) == {"library", "commerce"} and factories["commerce"].__name__ == "CommerceEnvironment"
    assert "place_order" in dir(factories["commerce"]) and "place_order" not in dir(library_cls)


def test_trl_reads_the_same_schemas_from_the_methods(library_cls, library_env):
    """TRL renders tools with transformers' ``get_json_schema`` over the instance's bound methods."""
    get_json_schema = pytest.importorskip("transformers.utils").get_json_schema
    env = library_cls()
    for name, tool in library_env.tools.items():
        schema = get_json_schema(getattr(env, name))["function"]
        source = tool.spec.input_schema
        assert schema["name"] == name
        assert set(schema["parameters"]["properties"]) == set(source["properties"])
        assert set(schema["parameters"].get("required", [])) == set(source.get("required", []))
        for arg, prop in source["properties"].items():
            assert schema["parameters"]["properties"][arg]["type"] == prop["type"]
            assert schema["parameters"]["properties"][arg].get("enum") == prop.get("enum")


def test_train_smoke_command_is_registered_with_its_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-smoke", "--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(option in text for option in ("--model", "--device", "--sft-steps", "--grpo-steps", "--num-generations"))
