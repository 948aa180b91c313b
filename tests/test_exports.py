"""Exports read back the way trainers read them, and the checkers catch what trainers would drop."""
from __future__ import annotations

import json

import pytest

from tests.seeds import kept_seeds
from envfactory.cli.main import main
from envfactory.data.exports import check_alpaca, check_openai, check_sharegpt, to_alpaca, to_openai, to_sharegpt
from envfactory.data.store import RecordStore
from envfactory.graphs.querygen import QueryGenContext, make_graph


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("exp") / "records.sqlite"
    for env in ("library", "commerce"):
        make_graph().invoke({"envs": [env], "seeds": kept_seeds(env, 2, 3)}, context=QueryGenContext(rollouts=1, store_path=str(path)))
    return path


def test_every_format_passes_its_checker(store):
    records = list(RecordStore(store).query(status="accepted"))
    assert len(records) == 6
    for rec in records:
        for convert, check in ((to_openai, check_openai), (to_sharegpt, check_sharegpt), (to_alpaca, check_alpaca)):
            for row in convert(rec):
                assert check(row) == [], (convert.__name__, check(row))


def test_sharegpt_alternates_and_encodes_tools_as_a_string(store):
    rec = next(RecordStore(store).query(env="commerce"))
    row = to_sharegpt(rec)[0]
    roles = [t["from"] for t in row["conversations"]]
    assert roles[0] == "human" and roles[-1] == "gpt" and len(roles) % 2 == 0
    assert isinstance(row["tools"], str) and {t["name"] for t in json.loads(row["tools"])} >= {"place_order", "get_order"}
    calls = [json.loads(t["value"]) for t in row["conversations"] if t["from"] == "function_call"]
    assert [c["name"] for c in calls] == [c.name for c in rec.gold_calls()]
    assert all(isinstance(c["arguments"], dict) for c in calls)


def test_checkers_catch_what_trainers_drop():
    bad = {"system": "", "tools": [{"name": "x"}], "conversations": [{"from": "human", "value": "hi"}, {"from": "function_call", "value": "{}"},
                                                                     {"from": "function_call", "value": "{}"}]}
    problems = check_sharegpt(bad)
    assert "tools must be a JSON-encoded string" in problems
    assert any("odd" in p or "even" in p for p in problems) and any("turn 2" in p for p in problems)
    assert check_openai({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "ghost", "arguments": {}}}]}], "tools": []})
    assert "empty output" in check_alpaca({"instruction": "x", "output": " ", "system": "", "history": []})


def test_alpaca_keeps_history_and_skips_failed_targets(store):
    rec = next(RecordStore(store).query(env="library"))
    samples = to_alpaca(rec)
    assert samples and [len(s["history"]) for s in samples] == list(range(len(samples)))  # oracle steps never fail
    first_call = next(s for s in samples if s["output"].startswith("<tool_call>"))
    assert json.loads(first_call["output"].split("<tool_call>\n")[1].split("\n</tool_call>")[0])["name"] == rec.gold_calls()[0].name
    assert "<tools>" in first_call["system"]


def test_export_command_writes_files_and_dataset_info(store, tmp_path, capsys):
    for fmt in ("openai", "sharegpt", "alpaca"):
        assert main(["export", "--format", fmt, "--store", str(store), "--out", str(tmp_path), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        lines = (tmp_path / f"envfactory.{fmt}.jsonl").read_text().splitlines()
        assert summary["rows"] == len(lines) > 0 and not summary["skipped"]
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["envfactory_sharegpt"]["formatting"] == "sharegpt"
    assert info["envfactory_sharegpt"]["columns"] == {"messages": "conversations", "system": "system", "tools": "tools"}
    assert info["envfactory_alpaca"]["file_name"] == "envfactory.alpaca.jsonl"


def test_training_smoke_exports_report_a_record_they_cannot_export_and_keep_the_rest(store, tmp_path):
    """The smoke run writes its rows with export_jsonl: a record that cannot become trl rows is logged with
    its key and reason and listed under skipped (it used to vanish without a word)."""
    from envfactory.data.exports import to_trl
    from envfactory.data.training.smoke import SmokeConfig, _held_out, write_exports
    cfg = SmokeConfig(out=str(tmp_path / "smoke"), envs=["library", "commerce"])
    records = list(RecordStore(store).query(status="accepted"))
    good = [r for r in records if not _held_out(r.key, cfg.held_out)]
    key = next(k for k in (f"drifted-{i}" for i in range(100)) if not _held_out(k, cfg.held_out))  # a train record
    drifted = records[0].model_copy(deep=True, update={"key": key})
    drifted.envs[0].initial_state_hash = "0" * 64    # the environment changed since the record was made
    copy = RecordStore(tmp_path / "records.sqlite")
    for rec in [*records, drifted]:
        copy.put(rec)
    copy.close()
    lines: list[str] = []
    paths, skipped = write_exports(tmp_path / "records.sqlite", cfg, lines.append)
    assert [(s["key"], len(s["problems"])) for s in skipped["trl"]] == [(key, 1)]
    assert "changed since the record was made" in skipped["trl"][0]["problems"][0]
    assert skipped["train"] == skipped["held_out"] == []          # its conversation is still fine for SFT
    assert [line for line in lines if "skipped" in line] == [
        f"exports  skipped record {key} (trl rows): {skipped['trl'][0]['problems'][0]}"]
    trl_rows = [json.loads(line) for line in paths["trl"].read_text(encoding="utf-8").splitlines()]
    assert len(trl_rows) == sum(len(to_trl(r)) for r in good) > 0 and all(not r["task_id"].startswith(key) for r in trl_rows)
    openai_train = paths["train"].read_text(encoding="utf-8").splitlines()
    assert len(openai_train) == len(good) + 1 and paths["held_out"].exists()


def test_export_jsonl_reports_a_record_once_however_many_of_its_rows_fail(store, tmp_path):
    """trl rows are per turn: a record all of whose turns break the format is one skipped entry with each
    distinct reason once (it used to be listed once per row, with the same reasons repeated)."""
    from envfactory.data.exports import export_jsonl, to_trl
    from envfactory.data.records import EnvRef
    from envfactory.envs import Environment
    records = list(RecordStore(store).query(status="accepted"))
    record = max((r for r in records if r.envs[0].name == "library"), key=lambda r: len(r.turns))
    assert len(record.turns) >= 2
    commerce = Environment.load("commerce")
    # a record that also names a second (untouched) environment: TRL routes a row to exactly one
    two_envs = record.model_copy(deep=True, update={"key": "two-envs"})
    two_envs.envs.append(EnvRef(name="commerce", version=commerce.manifest.version,
                                initial_state_hash=commerce.initial_hash, final_state_hash=commerce.initial_hash))
    assert len(to_trl(two_envs)) == len(record.turns)         # it converts; every row then fails the checker
    summary = export_jsonl([record, two_envs], "trl", tmp_path, "x")
    assert summary["rows"] == len(to_trl(record))
    [entry] = summary["skipped"]
    assert entry["key"] == "two-envs" and entry["rows_skipped"] == len(record.turns) and entry["rows_written"] == 0
    assert len(entry["problems"]) == len(set(entry["problems"])) >= 1
    assert any("exactly one environment" in p for p in entry["problems"])


def test_the_same_records_give_the_same_export_files_whatever_order_they_finished_in(store, tmp_path):
    from envfactory.data.exports import export_jsonl
    records = list(RecordStore(store).query())
    assert [r.key for r in records] == sorted(r.key for r in records)
    reversed_store = RecordStore(tmp_path / "reversed.sqlite")
    for i, rec in enumerate(reversed(records)):  # finished in the opposite order, at other times
        reversed_store.put(rec.model_copy(update={"provenance": rec.provenance.model_copy(
            update={"created_at": f"2030-01-01T00:00:{i:02d}"})}))
    first = export_jsonl(RecordStore(store).query(), "openai", tmp_path / "a", "x")
    second = export_jsonl(reversed_store.query(), "openai", tmp_path / "b", "x")
    assert first["rows"] == second["rows"] > 0
    assert (tmp_path / "a" / "x.openai.jsonl").read_bytes() == (tmp_path / "b" / "x.openai.jsonl").read_bytes()


def test_llamafactory_exports_come_with_their_settings(store, tmp_path):
    """The card and the example training YAML say what LlamaFactory must be told: a cutoff_len above the longest
    sample (measured with the model's chat template when given), qwen3_nothink, mask_history for alpaca."""
    import yaml
    from envfactory.data.training import tiny
    records = list(RecordStore(store).query(status="accepted"))
    rows = [row for r in records for row in to_openai(r)]
    tokenizer = tiny.train_tokenizer(tiny.render_conversations(rows, training=False), vocab_size=1024)
    model = tmp_path / "tok"
    tokenizer.save_pretrained(model)
    def count(r):
        ids = tokenizer.apply_chat_template(r["messages"], tools=r["tools"], tokenize=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
    longest = max(count(r) for r in rows)
    for fmt in ("sharegpt", "alpaca"):
        assert main(["export", "--format", fmt, "--store", str(store), "--out", str(tmp_path / "lf"),
                     "--tokenizer", str(model)]) == 0
        config = yaml.safe_load((tmp_path / "lf" / f"envfactory_{fmt}.llamafactory.yaml").read_text())
        assert config["dataset"] == f"envfactory_{fmt}" and config["template"] == "qwen3_nothink"
        assert longest < config["cutoff_len"] <= longest * 1.25 + 256 and config["cutoff_len"] % 256 == 0
        assert config.get("mask_history") is (True if fmt == "alpaca" else None)
        assert config["model_name_or_path"] == str(model)
        card = (tmp_path / "lf" / f"envfactory_{fmt}.card.md").read_text()
        assert f"`cutoff_len: {config['cutoff_len']}`" in card and f"is {longest} tokens" in card
        assert ("mask_history: true" in card) is (fmt == "alpaca")
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert set(info) == {"envfactory_sharegpt", "envfactory_alpaca"}
    # without a tokenizer the cutoff is estimated (and says so); a bad --tokenizer is refused
    assert main(["export", "--format", "sharegpt", "--store", str(store), "--out", str(tmp_path / "est")]) == 0
    assert "estimated from UTF-8 bytes" in (tmp_path / "est" / "envfactory_sharegpt.card.md").read_text()
    with pytest.raises(SystemExit) as exc:   # refused by the argument parser, in one line
        main(["export", "--format", "alpaca", "--store", str(store), "--out", str(tmp_path / "x"),
              "--tokenizer", str(tmp_path / "nope")])
    assert exc.value.code == 2


def test_the_llamafactory_check_says_what_it_needs(tmp_path, capsys):
    from envfactory.data.exports.llamafactory_check import main as check_main
    assert check_main([str(tmp_path), "--model", str(tmp_path)]) == 2
    assert "dataset_info.json does not exist" in capsys.readouterr().err


def test_every_exported_row_says_its_tiers_and_openai_arguments_are_json_text(store, tmp_path, capsys):
    for fmt in ("openai", "sharegpt", "alpaca", "trl"):
        assert main(["export", "--format", fmt, "--store", str(store), "--out", str(tmp_path), "--json"]) == 0
        capsys.readouterr()
        rows = [json.loads(line) for line in (tmp_path / f"envfactory.{fmt}.jsonl").read_text().splitlines()]
        assert rows
        for row in rows:
            meta = row["metadata"]
            assert meta["tiers"]["rollout"] == "offline:rule-solver" and meta["offline"] is True
            assert meta["record_key"] and isinstance(meta["prompts"], list)
    rows = [json.loads(line) for line in (tmp_path / "envfactory.openai.jsonl").read_text().splitlines()]
    calls = [c for r in rows for m in r["messages"] for c in m.get("tool_calls") or []]
    assert calls and all(isinstance(c["function"]["arguments"], str) for c in calls)  # OpenAI's fine-tuning form
    assert all(isinstance(json.loads(c["function"]["arguments"]), dict) for c in calls)
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "t", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "x"}, {"role": "assistant", "content": "ok"}],
        "tools": [{"type": "function", "function": {"name": "t", "parameters": {}}}]}
    assert any("JSON object" in p for p in check_openai(bad))


def test_trl_and_hf_chat_templates_load_both_argument_forms(store, tmp_path):
    """JSON-text arguments (OpenAI) and object arguments render the same through datasets' JSON loader
    and the Qwen3 chat template TRL trains with."""
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("trl")
    from envfactory.data.training.tiny import render_conversations
    records = list(RecordStore(store).query(status="accepted"))
    rendered = {}
    for form in ("string", "dict"):
        path = tmp_path / f"{form}.jsonl"
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for rec in records
                                for row in to_openai(rec, arguments_as=form)), encoding="utf-8")
        loaded = datasets.load_dataset("json", data_files=str(path), split="train")
        rows = []
        for row in loaded:  # object arguments may come back as JSON text (datasets' Json type) or objects
            rows.append({"messages": row["messages"], "tools": row["tools"]})
        rendered[form] = render_conversations(rows, training=False)
    assert rendered["string"] == rendered["dict"]
    reply = rendered["string"][0].split("<|im_start|>assistant", 1)[1]
    first_call = reply.split("<tool_call>\n")[1].split("\n</tool_call>")[0]
    assert isinstance(json.loads(first_call)["arguments"], dict)  # an object in the prompt, not quoted text
