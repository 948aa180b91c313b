"""verl export: parquet read back as verl reads it, gold replay to the recorded hashes, the reward hook
on calls the agent loop parsed, and the agent loop itself (its verl adapter against a fake verl)."""
from __future__ import annotations

import asyncio
import json
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.seeds import kept_seeds
from envfactory.cli.main import main
from envfactory.data.exports import verl_loop
from envfactory.data.exports.verl import NotExportable, check_tool_schema, check_verl, split_of, to_verl, write_verl
from envfactory.data.store import RecordStore
from envfactory.data.exports.verl_loop import EXTRA_FIELDS_KEY, EpisodeRollout, parse_tool_calls, row_tools, run_token_loop
from envfactory.data.exports.verl_reward import FAILURES, compute_score
from envfactory.data.exports.trl_env import to_trl
from envfactory.data.exports.verl_task import VerlTask, load_env, open_turn_episodes
from envfactory.data.records import Message
from envfactory.graphs.querygen import QueryGenContext, make_graph


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    base = tmp_path_factory.mktemp("verl")
    store = base / "records.sqlite"
    for env in ("library", "commerce"):
        make_graph().invoke({"envs": [env], "seeds": kept_seeds(env, 2, 3)}, context=QueryGenContext(rollouts=1, store_path=str(store)))
    out = base / "out"
    assert main(["export", "--format", "verl", "--store", str(store), "--out", str(out), "--json"]) == 0
    rows = {s: pq.read_table(out / f"envfactory.{s}.parquet").to_pylist() for s in ("train", "val")}
    return out, rows, store


def _rows(export):
    return export[1]["train"] + export[1]["val"]


def _calls_text(calls) -> str:
    return "".join(f"<tool_call>\n{json.dumps({'name': c['name'], 'arguments': c['arguments']})}\n</tool_call>\n" for c in calls)


def gold_name(row) -> str:
    return json.loads(row["reward_model"]["ground_truth"])[0]["name"]


def _gold(row):
    return json.loads(row["reward_model"]["ground_truth"])


def _score(row, text: str, where: str = "merged") -> dict:
    rollout = EpisodeRollout(VerlTask.from_extra_info(row["extra_info"]), tools=row_tools(row["extra_info"]))  # as the loop does
    rollout.step(text)
    fields = rollout.finish()
    info = dict(row["extra_info"])
    if where == "merged":      # the reward loop merges extra_fields into extra_info
        info[EXTRA_FIELDS_KEY] = fields
    else:                      # older managers keep them under tool_extra_fields
        info["tool_extra_fields"] = {EXTRA_FIELDS_KEY: fields}
    return compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], info)


def test_parquet_schema_rows_and_split(export):
    out, rows, _ = export
    schema = pq.read_schema(out / "envfactory.train.parquet")
    assert schema.names == ["data_source", "agent_name", "prompt", "ability", "reward_model", "extra_info"]
    assert pa.types.is_list(schema.field("prompt").type)                       # stock verl: a list of messages
    assert schema.field("reward_model").type.field("ground_truth").type == pa.string()
    info_type = schema.field("extra_info").type
    assert info_type.field("prefix_calls").type == pa.string() and info_type.field("index").type == pa.int64()
    all_rows = _rows(export)
    assert len(rows["train"]) >= 1 and len(rows["val"]) >= 1
    assert sorted(r["extra_info"]["index"] for r in all_rows) == list(range(len(all_rows)))
    for r in all_rows:
        assert check_verl(r) == [], check_verl(r)
        assert r["agent_name"] == "envfactory_agent" and r["reward_model"]["style"] == "rule"
        roles = [m["role"] for m in r["prompt"]]
        assert roles[0] == "system" and roles[-1] == "user" and roles.count("user") == r["extra_info"]["turn"] + 1
        for m in r["prompt"]:
            for c in m["tool_calls"] or []:
                assert isinstance(json.loads(c["function"]["arguments"]), dict)
    # split by chain: a chain never straddles train and val, and the split is a pure function of the chain
    chains = {s: {r["extra_info"]["chain_id"] for r in rows[s]} for s in rows}
    assert not chains["train"] & chains["val"]
    assert all(r["extra_info"]["split"] == s for s in rows for r in rows[s])
    assert split_of("library-5", 0.1) == split_of("library-5", 0.1)
    # later turns carry the earlier turns' gold calls, and those come from the same record
    multi = [r for r in all_rows if r["extra_info"]["turn"] > 0]
    assert multi and all(json.loads(r["extra_info"]["prefix_calls"]) for r in multi)


def test_a_history_that_contradicts_the_turn_state_is_not_exported(export, tmp_path):
    row = next(r for r in _rows(export) if r["extra_info"]["turn"] > 0
               and any(p["turn_state_hash"] != p["initial_state_hash"] for p in r["extra_info"]["envs"]))
    record = RecordStore(export[2]).get(row["extra_info"]["record_key"])
    assert len(to_verl(record)) >= 2
    for m in record.messages:  # the conversation claims no call was ever made
        m.tool_calls = []
    for export_turns in (to_verl, to_trl):  # one checked cut for both per-turn exports
        with pytest.raises(NotExportable, match="another state than the gold calls"):
            export_turns(record)
    summary = write_verl([record], tmp_path)
    assert summary["rows"] == {"train": 0, "val": 0} and "another state" in summary["skipped"][0]["problems"][0]


def test_datasets_reads_the_parquet_if_installed(export):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=str(export[0] / "envfactory.train.parquet"))["train"]
    assert ds[0]["prompt"][-1]["role"] == "user" and json.loads(ds[0]["reward_model"]["ground_truth"])


def test_ground_truth_replays_on_the_recorded_initial_state_to_the_gold_hash(export):
    for row in _rows(export):
        task = VerlTask.from_extra_info(row["extra_info"])
        episodes = open_turn_episodes(task)
        try:
            for pin in task.envs:
                assert episodes[pin.name].state_hash() == pin.turn_state_hash
            for call in _gold(row):
                assert episodes[call["env"]].call(call["name"], call["arguments"]).ok
            for pin in task.envs:
                assert episodes[pin.name].state_hash() == pin.gold_final_hash
        finally:
            for ep in episodes.values():
                ep.close()
    # at least one exported turn writes: its gold final state differs from where it started
    assert any(p["turn_state_hash"] != p["gold_final_hash"] for r in _rows(export) for p in r["extra_info"]["envs"])


def test_compute_score_is_one_for_gold_and_less_for_wrong_calls(export):
    rows = _rows(export)
    writing = next(r for r in rows if any(p["turn_state_hash"] != p["gold_final_hash"] for p in r["extra_info"]["envs"]))
    gold = _gold(writing)
    for where in ("merged", "tool_extra_fields"):
        good = _score(writing, _calls_text(gold), where)
        assert good["score"] == 1.0 and good["scored"] == 1.0 and good["state_equal"] == 1.0
        assert good["matched_calls"] == good["gold_calls"] == len(gold)
    assert set(good) >= {"trajectory", "state", "length_penalty", "format_penalty", "predicted_calls", "failure_code"}
    assert all(isinstance(v, float) for v in good.values())  # verl aggregates them as numbers
    missing = _score(writing, _calls_text(gold[:-1]))           # the last (writing) call never made
    assert missing["scored"] == 1.0 and missing["score"] < 1.0 and missing["state"] < 1.0
    noisy = _score(writing, _calls_text(gold) + "<tool_call>\n{not json}\n</tool_call>")
    # a malformed call costs the format penalty and, as it counts among the predicted calls, the length penalty
    assert noisy["format_penalty"] == 0.05 and noisy["length_penalty"] == 0.05 and noisy["score"] == pytest.approx(0.9)
    nothing = _score(writing, "I cannot help with that.")
    assert nothing["score"] == 0.0 and nothing["scored"] == 1.0 and nothing["trajectory"] == 0.0


def test_rows_show_only_their_environments_tools_and_shared_names_are_qualified(export, tmp_path):
    for row in _rows(export):
        env = row["extra_info"]["envs"][0]["name"]
        tools = json.loads(row["extra_info"]["tools"])
        assert [t["function"]["name"] for t in tools] == list(row["extra_info"]["tool_selection"])
        assert {t["function"]["name"] for t in tools} == {s.name for s in load_env(env).tool_specs}
        assert list(row["extra_info"]["tools_kwargs"]) == ["envfactory"]
    # library and productivity both have find_member: exported together, each row shows its own as env__find_member
    store = tmp_path / "records.sqlite"
    for env in ("library", "productivity"):
        make_graph().invoke({"envs": [env], "seeds": kept_seeds(env, 0, 8)},
                            context=QueryGenContext(rollouts=1, store_path=str(store)))
    summary = write_verl(RecordStore(store).query(status="accepted"), tmp_path / "out")
    assert not summary["skipped"] and not summary["tool_config_problems"]
    config = yaml.safe_load((tmp_path / "out" / "envfactory.tools.yaml").read_text())
    names = [t["tool_schema"]["function"]["name"] for t in config["tools"]]
    assert len(names) == len(set(names)) and {"library__find_member", "productivity__find_member"} <= set(names)
    assert "find_member" not in names
    rows = [r for s in ("train", "val") if (tmp_path / "out" / f"envfactory.{s}.parquet").exists()
            for r in pq.read_table(tmp_path / "out" / f"envfactory.{s}.parquet").to_pylist()]
    used = [r for r in rows if any(c["name"].endswith("find_member") for c in _gold(r))]
    assert used, "no exported turn calls find_member: pick other seeds"
    for row in used:
        env = row["extra_info"]["envs"][0]["name"]
        assert f"{env}__find_member" in row["extra_info"]["tool_selection"]
        assert all(c["name"] != "find_member" for c in _gold(row))
        assert _score(row, _calls_text(_gold(row)))["score"] == 1.0          # the qualified gold replays and scores
        assert _score(row, _calls_text([{**c, "name": c["name"].split("__")[-1]} for c in _gold(row)]))["score"] < 1.0
    shown = [c["function"]["name"] for r in rows for m in r["prompt"] for c in (m.get("tool_calls") or [])]
    assert "find_member" not in shown


def test_doing_nothing_scores_zero_on_every_exported_turn_reads_included(export):
    rows = _rows(export)
    read_only = [r for r in rows if all(p["turn_state_hash"] == p["gold_final_hash"] for p in r["extra_info"]["envs"])]
    assert read_only, "the export should hold turns whose gold only reads"
    for row in rows:
        nothing = _score(row, "Done.")
        assert nothing["scored"] == 1.0 and nothing["score"] == 0.0, (row["extra_info"]["record_key"], nothing)
    for row in read_only[:3]:
        assert _score(row, _calls_text(_gold(row)))["score"] == 1.0


def test_no_score_when_state_drifted_gold_fails_or_the_loop_record_is_missing(export):
    row = _rows(export)[0]
    text = _calls_text(_gold(row))
    drifted = json.loads(json.dumps(row))
    drifted["extra_info"]["envs"][0]["turn_state_hash"] = "0" * 64
    rollout = EpisodeRollout(VerlTask.from_extra_info(drifted["extra_info"]))
    assert rollout.failure and "drift" in rollout.failure and rollout.step(text) == []
    out = compute_score(row["data_source"], text, row["reward_model"]["ground_truth"],
                        {**drifted["extra_info"], EXTRA_FIELDS_KEY: rollout.finish()})
    assert out["scored"] == 0.0 and out["failure_code"] == FAILURES["state_drift"]
    bad_gold = json.dumps([{"name": "get_book", "arguments": {"book_id": 999999}, "masked": [], "env": "library"}])
    lib = next(r for r in _rows(export) if r["data_source"] == "envfactory/library")
    out = _score({**lib, "reward_model": {"style": "rule", "ground_truth": bad_gold}}, "")
    assert out["scored"] == 0.0 and out["failure_code"] == FAILURES["gold_replay"]
    out = compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], dict(row["extra_info"]))
    assert out["scored"] == 0.0 and out["failure_code"] == FAILURES["no_rollout_record"]  # no regex fallback
    assert compute_score("x", text, "[]", {}, failure_score=-1.0)["score"] == -1.0


def test_parse_tool_calls_counts_malformed_blocks():
    calls, bad = parse_tool_calls('<think>x</think><tool_call>{"name": "a", "arguments": "{\\"k\\": 1}"}</tool_call>'
                                  '<tool_call>{"name": "b", "arguments": [1]}</tool_call>'
                                  '<tool_call>[1]</tool_call><tool_call>{"name": "c"')
    assert calls == [{"name": "a", "arguments": {"k": 1}}]
    assert len(bad) == 3 and "never closed" in bad[-1]
    assert parse_tool_calls("plain answer") == ([], [])


def test_each_rollout_owns_its_episode(export):
    row = next(r for r in _rows(export) if any(p["turn_state_hash"] != p["gold_final_hash"] for p in r["extra_info"]["envs"]))
    task = VerlTask.from_extra_info(row["extra_info"])
    first, second = EpisodeRollout(task), EpisodeRollout(task)
    first.step(_calls_text(_gold(row)))
    a, b = first.finish(), second.finish()
    pins = {p.name: p for p in task.envs}
    assert all(a["final_hashes"][n] == pins[n].gold_final_hash for n in a["final_hashes"])
    assert all(b["final_hashes"][n] == pins[n].turn_state_hash for n in b["final_hashes"])  # untouched by the first
    capped = EpisodeRollout(task, max_calls_per_step=1)
    msgs = capped.step(_calls_text(_gold(row)) * 2)
    assert len(msgs) == 2 * len(_gold(row)) and msgs[-1]["content"].startswith("Error: not executed")
    assert len(json.loads(capped.finish()["calls"])) == 1
    unknown = EpisodeRollout(task)
    msgs = unknown.step('<tool_call>{"name": "drop_tables", "arguments": {}}</tool_call>')
    assert msgs[0]["content"].startswith("Error: unknown tool") and unknown.finish()["malformed"] == 1


def test_tool_config_agent_loop_config_and_readme(export):
    out, rows, _ = export
    config = yaml.safe_load((out / "envfactory.tools.yaml").read_text())
    names = {t["tool_schema"]["function"]["name"] for t in config["tools"]}
    assert names == {s.name for e in ("library", "commerce") for s in load_env(e).tool_specs}
    assert all(t["config"]["type"] == "native" and t["tool_schema"]["type"] == "function" for t in config["tools"])
    assert {t["class_name"] for t in config["tools"]} == {"envfactory.data.exports.verl_agent.EpisodeTool"}
    assert all(check_tool_schema(t["tool_schema"]) == [] for t in config["tools"])
    bad = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {
        "type": "object", "required": [], "properties": {"a": {"type": ["string", "null"]}, "b": {"type": "integer", "enum": [1, 2]}}}}}
    assert len(check_tool_schema(bad)) == 2  # what verl's OpenAIFunctionToolSchema refuses
    loops = yaml.safe_load((out / "agent_loop.yaml").read_text())
    assert loops == [{"name": "envfactory_agent", "_target_": "envfactory.data.exports.verl_agent.EnvFactoryAgentLoop"}]
    readme = (out / "README.md").read_text()
    for key in ("data.return_raw_chat=True", "multi_turn.enable=True", "multi_turn.tool_config_path=",
                "agent.agent_loop_config_path=", "custom_reward_function.path=", "custom_reward_function.name=compute_score"):
        assert key in readme
    # the reward shim loads by path, as verl loads custom reward files
    import importlib.util
    spec = importlib.util.spec_from_file_location("custom_module", out / "reward_fn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.compute_score is compute_score


def test_checker_catches_what_verl_or_our_reward_would_trip_on(export):
    row = json.loads(json.dumps(_rows(export)[0]))
    row["reward_model"]["ground_truth"] = json.loads(row["reward_model"]["ground_truth"])
    row["prompt"].append({"role": "assistant", "content": "hi"})
    row["extra_info"]["tools_kwargs"] = {}
    row["agent_name"] = "tool_agent"
    problems = check_verl(row)
    assert any("ground_truth must be a JSON string" in p for p in problems)
    assert any("must end with the user turn" in p for p in problems)
    assert any("tools_kwargs lacks" in p for p in problems)
    assert any("agent_name" in p for p in problems)
    assert check_verl({"prompt": "x"}) and "prompt must be a list" in check_verl({"prompt": "x"})


# ---------------------------------------------------------------- the verl adapter, against a fake verl

class CharTokenizer:
    """One token per character; a template that, like Qwen2.5's, adds a default system turn."""

    eos_token_id = 3

    def decode(self, ids, **kw):
        return "".join(chr(i) for i in ids)

    def apply_chat_template(self, messages, tools=None, add_generation_prompt=False, tokenize=True, **kw):
        for m in messages:  # what HF templates expect: no null keys, argument dicts
            assert None not in m.values()
            assert all(isinstance(c["function"]["arguments"], dict) for c in m.get("tool_calls", []))
        text = "" if messages and messages[0].get("role") == "system" else "<|system|>default\n"
        if tools:
            text += "<tools>" + ",".join(t["function"]["name"] for t in tools) + "</tools>\n"
        text += "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages if m)
        text += "<|assistant|>" if add_generation_prompt else ""
        return [ord(c) for c in text]


@pytest.fixture
def fake_verl(monkeypatch):
    registry: dict[str, dict] = {}

    class AgentLoopBase:
        def __init__(self, trainer_config, server_manager, tokenizer, processor, **kwargs):
            self.config, self.server_manager, self.tokenizer, self.processor = trainer_config.config, server_manager, tokenizer, processor

    class AgentLoopOutput:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    def register(name):
        def deco(cls):
            registry[name] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
            return cls
        return deco

    class BaseTool:
        def __init__(self, config, tool_schema):
            self.config, self.tool_schema, self.name = config, tool_schema, tool_schema["function"]["name"]

    class ToolResponse:
        def __init__(self, text=None):
            self.text = text

    modules = {"verl": {}, "verl.experimental": {}, "verl.experimental.agent_loop": {},
               "verl.experimental.agent_loop.agent_loop": {"AgentLoopBase": AgentLoopBase, "AgentLoopOutput": AgentLoopOutput,
                                                           "register": register},
               "verl.tools": {}, "verl.tools.base_tool": {"BaseTool": BaseTool}, "verl.tools.schemas": {"ToolResponse": ToolResponse}}
    for name, attrs in modules.items():
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, AGENT_MODULE, raising=False)  # imported afresh against this fake verl
    yield registry
    sys.modules.pop(AGENT_MODULE, None)


AGENT_MODULE = "envfactory.data.exports.verl_agent"


def _agent_module():
    import importlib
    return importlib.import_module(AGENT_MODULE)


def test_adapter_needs_verl_only_when_asked(monkeypatch):
    monkeypatch.delitem(sys.modules, AGENT_MODULE, raising=False)
    monkeypatch.setitem(sys.modules, "verl", None)  # as if verl were not installed
    with pytest.raises(ImportError, match="needs verl installed"):
        _agent_module()
    assert verl_loop.AGENT_NAME == "envfactory_agent"  # the loop's own module works without it
    sys.modules.pop(AGENT_MODULE, None)


def test_agent_loop_adapter_runs_a_rollout_and_feeds_compute_score(export, fake_verl):
    writing = [r for r in _rows(export) if any(p["turn_state_hash"] != p["gold_final_hash"] for p in r["extra_info"]["envs"])]
    row = max(writing, key=lambda r: r["extra_info"]["turn"])  # a later turn: earlier calls are in its prompt
    assert any(m["tool_calls"] for m in row["prompt"])
    cls = _agent_module().EnvFactoryAgentLoop
    # register() put an importable name in the registry, the one agent_loop.yaml gives (no <locals>)
    target = yaml.safe_load((export[0] / "agent_loop.yaml").read_text())[0]["_target_"]
    assert fake_verl["envfactory_agent"]["_target_"] == target == AGENT_MODULE + ".EnvFactoryAgentLoop"
    replies = [_calls_text(_gold(row)) + "<|im_end|>", "All done.<|im_end|>"]

    class Server:  # replies like verl's TokenOutput: token ids and their log-probabilities
        async def generate(self, request_id, prompt_ids, sampling_params, **kw):
            ids = [ord(c) for c in replies.pop(0)]
            return types.SimpleNamespace(token_ids=ids, log_probs=[-0.5] * len(ids))

    config = {"actor_rollout_ref": {"rollout": {"response_length": 100_000,
                                                "multi_turn": {"max_assistant_turns": 5, "max_tool_response_length": 2000}}},
              "data": {}}
    loop = cls(types.SimpleNamespace(config=config), Server(), CharTokenizer(), None)
    out = asyncio.run(loop.run({"temperature": 1.0}, raw_prompt=row["prompt"], extra_info=row["extra_info"],
                               reward_model=row["reward_model"]))  # verl hands the loop every column of the row
    text = "".join(chr(i) for i in out.response_ids)
    model_part = "".join(chr(i) for i, m in zip(out.response_ids, out.response_mask) if m)
    assert model_part == _calls_text(_gold(row)) + "<|im_end|>" + "All done.<|im_end|>"  # tool tokens are masked
    assert "<|tool|>" in text and "<|system|>default" not in text and out.num_turns == 4
    assert not replies
    assert len(out.response_logprobs) == len(out.response_ids)
    assert all((lp == -0.5) == bool(m) for lp, m in zip(out.response_logprobs, out.response_mask))
    # hydra resolves the agent-loop config's _target_ to this class
    import importlib
    module, name = target.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is cls
    fields = out.extra_fields[EXTRA_FIELDS_KEY]
    score = compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], {**row["extra_info"], EXTRA_FIELDS_KEY: fields})
    assert score["score"] == 1.0


def test_token_loop_masks_everything_when_the_environment_drifted(export):
    row = json.loads(json.dumps(_rows(export)[0]))
    row["extra_info"]["envs"][0]["initial_state_hash"] = "f" * 64

    async def generate(ids):
        raise AssertionError("no generation for a row whose environment drifted")

    out = asyncio.run(run_token_loop(EpisodeRollout(VerlTask.from_extra_info(row["extra_info"])), row["prompt"],
                                     CharTokenizer(), generate, response_length=1000))
    assert out["response_mask"] == [0] and "drift" in out["extra_fields"][EXTRA_FIELDS_KEY]["failure"]


def test_episode_tool_keeps_one_episode_per_request_for_the_stock_loop(export, fake_verl):
    row = next(r for r in _rows(export) if any(p["turn_state_hash"] != p["gold_final_hash"] for p in r["extra_info"]["envs"]))
    config = yaml.safe_load((export[0] / "envfactory.tools.yaml").read_text())
    schemas = {t["tool_schema"]["function"]["name"]: t["tool_schema"] for t in config["tools"]}
    tool_cls = _agent_module().EpisodeTool
    kwargs = row["extra_info"]["tools_kwargs"]
    assert list(kwargs) == ["envfactory"]  # one key on every row: no null struct fields for other environments

    async def rollout(request_id, calls):
        agent = types.SimpleNamespace(request_id=request_id, extra_fields={}, tools_kwargs=kwargs)
        for call in calls:  # the stock loop: create -> execute -> release for every single call
            tool = tool_cls({"type": "native"}, schemas[call["name"]])
            iid, _ = await tool.create(create_kwargs=kwargs.get(call["name"], {}).get("create_kwargs", {}))
            await tool.execute(iid, call["arguments"], agent_data=agent)
            await tool.release(iid)
        return agent.extra_fields[EXTRA_FIELDS_KEY]

    from envfactory.data.exports import bundle
    [tool_entry] = [t for t in config["tools"] if t["tool_schema"]["function"]["name"] == gold_name(row)][:1]
    assert tool_entry["config"]["export_dir"] == str(export[0].resolve())
    tool_cls(tool_entry["config"], tool_entry["tool_schema"])   # the tool registers its export's environments
    assert export[0].resolve() in bundle._registered
    assert json.loads((export[0] / "packages.json").read_text())["library"]["origin"] == "bundled"
    gold = _gold(row)
    fields = asyncio.run(rollout("req-1", gold))
    other = asyncio.run(rollout("req-2", gold[:1]))
    score = compute_score(row["data_source"], "", row["reward_model"]["ground_truth"], {**row["extra_info"], EXTRA_FIELDS_KEY: fields})
    assert score["score"] == 1.0 and len(json.loads(fields["calls"])) == len(gold)
    assert len(json.loads(other["calls"])) == 1  # a second request did not see the first one's calls


def test_export_command_says_when_there_is_nothing_to_export(export, tmp_path, capsys):
    assert main(["export", "--format", "verl", "--store", str(export[2]), "--out", str(tmp_path / "o"), "--env", "nosuch"]) == 1
    assert "nothing to export" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_records_of_an_environment_that_no_longer_loads_are_skipped_not_fatal(export, tmp_path):
    from envfactory.data.exports import export_jsonl
    from envfactory.data.exports.verl import write_verl
    from envfactory.data.records import TrajectoryRecord
    from envfactory.data.store import RecordStore
    good = next(RecordStore(export[2]).query(status="accepted"))
    lost = TrajectoryRecord.model_validate({**good.model_dump(), "key": "lost",
                                           "envs": [{**good.envs[0].model_dump(), "name": "no_such_env_anywhere"}]})
    summary = write_verl([good, lost], tmp_path / "verl")
    assert sum(summary["rows"].values()) > 0 and [s["key"] for s in summary["skipped"]] == ["lost"]
    trl = export_jsonl([good, lost], "trl", tmp_path / "trl", "x")
    assert trl["rows"] > 0 and [s["key"] for s in trl["skipped"]] == ["lost"]


# ---------------------------------------------------------------- one turn cut for verl and trl

def _with_clarification(record):
    """The record as a conversation whose simulated user asked back inside the first turn: one user
    message more than turns, and nothing saying which of them opens the second turn."""
    rec = record.model_copy(deep=True)
    rec.mode = "conv"
    first = next(i for i, m in enumerate(rec.messages) if m.role == "user")
    rec.messages[first + 1:first + 1] = [Message(role="assistant", content="Which one do you mean?"),
                                         Message(role="user", content="The one I told you about, please.")]
    return rec


def test_verl_and_trl_cut_a_record_into_the_same_turns(export, tmp_path):
    from envfactory.data.exports import export_jsonl
    record = max(RecordStore(export[2]).query(status="accepted", env="library"), key=lambda r: len(r.turns))
    assert len(record.turns) >= 2
    verl_rows, trl_rows = to_verl(record), to_trl(record)
    # every turn is one trl row; the verl row of a turn (turns with gold calls) has the same prompt and gold
    assert [r["turn"] for r in trl_rows] == list(range(len(record.turns)))
    for v in verl_rows:
        t = trl_rows[v["extra_info"]["turn"]]
        assert [m["content"] for m in v["prompt"]] == [m["content"] for m in t["prompt"]]
        assert [(c["name"], c["arguments"]) for c in _gold(v)] == [(c["name"], c["arguments"]) for c in json.loads(t["gold_calls"])]
        assert json.loads(v["extra_info"]["prefix_calls"]) == json.loads(t["prefix_calls"])
    # the clarification: both exporters refuse the record with the same reason rather than pair a prompt
    # with another turn's gold (before, trl cut it anyway and trained turn 2's prompt on turn 1's gold)
    asked_back = _with_clarification(record)
    reasons = []
    for export_turns in (to_verl, to_trl):
        with pytest.raises(NotExportable, match="user messages for .* turns") as caught:
            export_turns(asked_back)
        reasons.append(str(caught.value))
    assert reasons[0] == reasons[1] and f"{len(record.turns) + 1} user messages for {len(record.turns)} turns" in reasons[0]
    # the writers skip it, count it and say why, and keep the good record
    verl = write_verl([record, asked_back.model_copy(update={"key": "asked-back"})], tmp_path / "verl")
    trl = export_jsonl([record, asked_back.model_copy(update={"key": "asked-back"})], "trl", tmp_path / "trl", "x")
    assert sum(verl["rows"].values()) == len(verl_rows) and trl["rows"] == len(trl_rows)
    assert [(s["key"], s["problems"]) for s in verl["skipped"]] == [(s["key"], s["problems"]) for s in trl["skipped"]] == [
        ("asked-back", [reasons[0]])]


# ---------------------------------------------------------------- failures found by the loop, not the reward

def _writing_row(export):
    return next(r for r in _rows(export) if r["data_source"] == "envfactory/library"
                and any(p["turn_state_hash"] != p["gold_final_hash"] for p in r["extra_info"]["envs"]))


def _tampered(row, change) -> str:
    gold = _gold(row)
    change(gold)
    return json.dumps(gold)


def test_a_turn_whose_gold_does_not_replay_is_masked_from_the_start(export):
    row = _writing_row(export)
    task = VerlTask.from_extra_info(row["extra_info"])
    good = EpisodeRollout(task, gold=row["reward_model"]["ground_truth"])
    assert good.failure is None and good.step(_calls_text(_gold(row)))  # a good task is unaffected
    assert good.finish()["failure"] is None
    assert EpisodeRollout(task, gold="{not json").failure_kind == "bad_row"

    def no_such_ids(gold):  # every id argument names a row that does not exist: the gold call fails
        for c in gold:
            c["arguments"] = {k: 10**6 if k.endswith("_id") else v for k, v in c["arguments"].items()}

    def without_last_write(gold):  # the gold still executes but ends in another state than the row pins
        gold.pop()

    for change, words in ((no_such_ids, "failed on replay"), (without_last_write, "end in state")):
        truth = _tampered(row, change)
        rollout = EpisodeRollout(task, gold=truth)
        assert rollout.failure_kind == "gold_replay" and words in rollout.failure  # set at construction

        async def generate(ids):
            raise AssertionError("no generation for a row whose gold does not replay")

        out = asyncio.run(run_token_loop(rollout, row["prompt"], CharTokenizer(), generate, response_length=1000))
        assert out["response_mask"] == [0]  # masked: trains nothing
        fields = out["extra_fields"][EXTRA_FIELDS_KEY]
        score = compute_score(row["data_source"], "", truth, {**row["extra_info"], EXTRA_FIELDS_KEY: fields})
        assert score["scored"] == 0.0 and score["failure_code"] == FAILURES["gold_replay"]
        # the reward alone (a loop record without the failure) reaches the same verdict
        alone = _score({**row, "reward_model": {"style": "rule", "ground_truth": truth}}, _calls_text(_gold(row)))
        assert alone["scored"] == 0.0 and alone["failure_code"] == FAILURES["gold_replay"]


def test_agent_loop_adapter_masks_a_row_whose_gold_does_not_replay(export, fake_verl):
    row = _writing_row(export)
    truth = _tampered(row, lambda gold: gold.pop())

    class Server:
        async def generate(self, **kw):
            raise AssertionError("no generation for a row whose gold does not replay")

    config = {"actor_rollout_ref": {"rollout": {"response_length": 1000, "multi_turn": {}}}, "data": {}}
    loop = _agent_module().EnvFactoryAgentLoop(types.SimpleNamespace(config=config), Server(), CharTokenizer(), None)
    out = asyncio.run(loop.run({}, raw_prompt=row["prompt"], extra_info=row["extra_info"],
                               reward_model={"style": "rule", "ground_truth": truth}))
    assert out.response_mask == [0] and out.extra_fields[EXTRA_FIELDS_KEY]["failure_kind"] == "gold_replay"


def test_a_rollout_that_does_not_reproduce_is_masked(export):
    row = _writing_row(export)

    class Forgetful(EpisodeRollout):  # as if a tool were not deterministic: its replay ends elsewhere
        def execute(self, name, arguments):
            text = super().execute(name, arguments)
            self.calls.pop()
            return text

    replies = [_calls_text(_gold(row)), "Done."]

    async def generate(ids):
        return [ord(c) for c in replies.pop(0)]

    rollout = Forgetful(VerlTask.from_extra_info(row["extra_info"]), gold=row["reward_model"]["ground_truth"])
    assert rollout.failure is None
    out = asyncio.run(run_token_loop(rollout, row["prompt"], CharTokenizer(), generate, response_length=100_000))
    fields = out["extra_fields"][EXTRA_FIELDS_KEY]
    assert not replies and set(out["response_mask"]) == {0} and len(out["response_mask"]) > 1
    assert fields["failure_kind"] == "not_reproducible" and fields["final_hashes"] == {}
    score = compute_score(row["data_source"], "", row["reward_model"]["ground_truth"], {**row["extra_info"], EXTRA_FIELDS_KEY: fields})
    assert score["scored"] == 0.0 and score["failure_code"] == FAILURES["not_reproducible"]


def test_trl_and_verl_readers_refuse_a_bad_call_list_with_the_same_words(export, library_cls_for_export):
    """One parser behind check_trl, the TRL environment's reset, verl's agent loop and compute_score."""
    from envfactory.data.exports.trl_env import check_trl
    from envfactory.data.exports.verl_reward import score_rollout
    row = _writing_row(export)
    record = RecordStore(export[2]).get(row["extra_info"]["record_key"])
    trl_row = to_trl(record)[row["extra_info"]["turn"]]
    bad = '[{"name": "get_book", "arguments": [1]}]'
    reason = "must be a JSON list of calls: call 1 (get_book): arguments: Input should be a valid dictionary"
    assert f"gold_calls {reason}" in check_trl({**trl_row, "gold_calls": bad})
    env = library_cls_for_export()
    env.reset(**{**trl_row, "gold_calls": bad})
    assert env._score().failure == f"gold_calls {reason}"
    rollout = EpisodeRollout(VerlTask.from_extra_info(row["extra_info"]), gold=bad)
    assert (rollout.failure_kind, rollout.failure) == ("bad_row", f"reward_model.ground_truth {reason}")
    result, kind = score_rollout(bad, row["extra_info"], {"calls": "[]"})
    assert (kind, result.failure) == ("bad_row", f"reward_model.ground_truth {reason}")
    score = compute_score(row["data_source"], "", bad, {**row["extra_info"], EXTRA_FIELDS_KEY: {"calls": "[]"}})
    assert score["scored"] == 0.0 and score["failure_code"] == FAILURES["bad_row"]
    # a trl row without gold_calls is not scored against no calls at all: the checker and reset both refuse it
    no_gold = {k: v for k, v in trl_row.items() if k != "gold_calls"}
    assert "gold_calls must be a JSON list of calls: got null" in check_trl(no_gold)
    env.reset(**no_gold)
    assert env._score().failure == "gold_calls must be a JSON list of calls: got null"
    # prefix_calls may be absent (a first turn): reset starts from the initial state, and the checker agrees
    first = to_trl(record)[0]
    assert check_trl({k: v for k, v in first.items() if k != "prefix_calls"}) == []


@pytest.fixture(scope="module")
def library_cls_for_export():
    from envfactory.data.exports.trl_env import environment_class
    return environment_class("library")


def test_the_readme_and_the_export_print_the_same_verl_command(export):
    """The project README shows the command the export writes (and test_verl_real runs), with placeholders."""
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"```bash\npython3 -m verl\.trainer\.main_ppo \\\n(.*?)```", readme, re.DOTALL).group(1)
    shown = [line.strip().rstrip("\\").strip() for line in block.strip().splitlines()]
    written = (export[0] / "README.md").read_text()
    exported = [line.strip().rstrip("\\").strip() for line in
                re.search(r"python3 -m verl\.trainer\.main_ppo \\\n(.*?)```", written, re.DOTALL).group(1).strip().splitlines()]
    assert [s.split("=", 1)[0] for s in shown] == [e.split("=", 1)[0] for e in exported]
    for s, e in zip(shown, exported):  # same values, where the README does not stand in a placeholder
        value = s.split("=", 1)[1]
        if not re.fullmatch(r"DIR/.*|[A-Z]|MODEL_PATH", value):
            assert value == e.split("=", 1)[1], (s, e)
    config = yaml.safe_load((export[0] / "envfactory.verl.yaml").read_text())
    assert config["defaults"] == ["ppo_trainer", "_self_"]
    assert config["reward"]["custom_reward_function"]["name"] == "compute_score"
    assert config["data"]["filter_overlong_prompts"] is False
