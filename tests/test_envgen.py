"""EnvGen graph: research -> design -> code -> tests -> sandboxed validation -> repair loop -> accept/reject.

Offline runs use the bundled corpus; model runs use scripted chat models for the Code agent (and the
real langchain-openai client against the local stub server once). Every attempt is validated in a
fresh sandbox, so these tests also prove that repaired code, not stale code, is what gets judged.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from envfactory.agents import code_agent, search_agent
from envfactory.agents.search_backends import make_backend
from envfactory.envs import Environment
from envfactory.graphs.envgen import EnvGenContext, make_graph
from tests.doubles import OpenAIStubServer, ScriptedChatModel, malformed, tool_call_message

TARGET = "a public library lending desk API"


@pytest.fixture(scope="module")
def brief():
    return search_agent.research(TARGET, backend=make_backend("corpus")).brief


@pytest.fixture(scope="module")
def skeleton(brief):
    return code_agent.skeleton_files(brief)


def _ctx(tmp_path: Path, **kw) -> EnvGenContext:
    return EnvGenContext(catalog_dir=str(tmp_path / "catalog"), workspace_dir=str(tmp_path / "work"),
                         sandbox_seconds=kw.pop("sandbox_seconds", 60.0), **kw)


def _files(**files) -> AIMessage:
    return tool_call_message("PackageFiles", {"files": files, "notes": "scripted"})


def _broken_tools(skeleton: dict[str, str]) -> str:
    """Valid Python whose every tool raises: tests fail, the package still imports."""
    return skeleton["tools.py"] + "\n\nimport envfactory.envs as _ef\n" + "\n".join(
        f"def {t['name']}(ctx, **kw):\n    raise _ef.ToolError('broken on purpose')\n"
        for t in json.loads(skeleton["env.json"])["tools"])


def test_offline_synthesis_lands_a_verified_package(tmp_path, brief, monkeypatch):
    out = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path))
    assert out["status"] == "accepted", out.get("reason")
    dest = Path(out["package_path"])
    assert dest.parent == tmp_path / "catalog" and (dest / "verified.json").is_file()
    assert out["tiers"]["code"] == code_agent.OFFLINE_TIER and out["tiers"]["search"] != "model"
    record = json.loads((dest / "synthesis" / "synthesis.json").read_text())
    assert record["status"] == "accepted" and record["attempts"][0]["verdict"] == "PASS"
    assert json.loads((dest / "synthesis" / "brief.json").read_text())["sources"]
    env = Environment.load(dest)  # trusted: its code is byte for byte our skeleton generator's
    assert len(env.tools) == len(brief.spec.operations)
    # the package's own tests ran in the sandbox and covered every tool on both paths
    best = out["best"]
    assert best["tests_passed"] == best["tests_total"] > 0 and best["paths_covered"] == best["paths_total"]
    # synthesized catalogs resolve by name once they are on ENVFACTORY_CATALOG_PATH
    from envfactory.envs.runtime.errors import EnvironmentPackageError
    with pytest.raises(EnvironmentPackageError, match="neither a folder nor a bundled environment"):
        Environment.load(dest.name)
    monkeypatch.setenv("ENVFACTORY_CATALOG_PATH", str(tmp_path / "catalog"))
    assert Environment.load(dest.name).package_dir == dest.resolve()


def test_failing_first_attempt_is_repaired(tmp_path, skeleton):
    code = ScriptedChatModel(script=[_files(**{"tools.py": _broken_tools(skeleton)}),
                                     _files(**{"tools.py": skeleton["tools.py"] + "\n# repaired by the model\n"})])
    out = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path, chat_models={"code": code}))
    assert out["status"] == "accepted", out.get("reason")
    first, second = out["attempts"]
    assert first["verdict"] == "FAIL" and first["tests_passed"] < first["tests_total"]
    assert second["verdict"] == "PASS"
    # the repair request showed the model what failed
    repair_request = code.requests[1][-1].content
    assert "broken on purpose" in repair_request and "Tests passed" in repair_request
    # the attempt keeps the brief it led to (the report shows it between attempts)
    assert first["repair_brief"] and first["repair_brief"] in repair_request and second["repair_brief"] == ""
    assert [p["id"] for p in out["prompts"]] == ["code_agent/implement", "code_agent/repair"]
    assert out["tiers"]["code"] == "model" and out["tokens"] > 0
    # code a model wrote passed the sandbox, but runs in-process only once the user trusts it
    from envfactory.envs.runtime.errors import UntrustedCodeError
    from envfactory.envs.runtime.trust import grant_trust
    with pytest.raises(UntrustedCodeError, match="envs trust"):
        Environment.load(out["package_path"])
    grant_trust(Path(out["package_path"]))
    assert Environment.load(out["package_path"]).name == "library_lending"


def test_budget_runs_out_and_the_best_attempt_is_recorded(tmp_path, skeleton):
    broken = _broken_tools(skeleton)
    code = ScriptedChatModel(script=[_files(**{"tools.py": broken})] * 3)
    out = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path, max_rounds=1, chat_models={"code": code}))
    assert out["status"] == "rejected"
    assert "no attempt passed within 1 repair round" in out["reason"] and "best attempt #" in out["reason"]
    assert len(out["attempts"]) == 2 and code.remaining == 1
    result = json.loads((tmp_path / "work" / out["run_id"] / "synthesis.json").read_text())
    assert result["status"] == "rejected" and result["reason"] == out["reason"]
    assert not (tmp_path / "catalog").exists()


def test_token_budget_stops_the_loop(tmp_path, skeleton):
    code = ScriptedChatModel(script=[_files(**{"tools.py": _broken_tools(skeleton)})] * 3)
    out = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path, max_tokens=1, chat_models={"code": code}))
    assert out["status"] == "rejected" and out["reason"].startswith("token budget exhausted")
    assert len(out["attempts"]) == 1


def test_unusable_model_output_is_retried_then_rejected(tmp_path):
    code = ScriptedChatModel(script=[
        AIMessage("I would rather not write code."),                     # no code
        _files(**{"tools.py": "def broken(:\n    pass"}),                 # invalid Python
        malformed("unknown_tool"),                                       # a call to a tool that does not exist
    ])
    out = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path, max_rounds=0, chat_models={"code": code}))
    assert out["status"] == "rejected"
    reason = out["attempts"][0]["reason"]
    assert reason.startswith("code agent:") and "delete_everything" in reason
    assert code.remaining == 0 and len(code.requests) == 3
    assert out["tokens"] > 0  # the unusable replies still count against the budget
    # the invalid Python was sent back to the model with the syntax error
    assert "not valid Python" in code.requests[2][-1].content


@pytest.mark.parametrize("hostile", [
    "while True:\n    pass\n",
    "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=2)\n",
])
def test_hanging_or_networking_code_is_stopped_by_the_sandbox(tmp_path, skeleton, hostile):
    code = ScriptedChatModel(script=[_files(**{"tools.py": hostile + skeleton["tools.py"]}),
                                     _files(**{"tools.py": skeleton["tools.py"]})])
    out = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path, sandbox_seconds=6, chat_models={"code": code}))
    first = out["attempts"][0]
    assert first["verdict"] == "FAIL"
    # stopped by a limit, or the kernel refused the socket and the import failed on it
    assert first["sandbox"] in ("timeout", "cpu_limit", "crashed") or "PermissionError" in json.dumps(first), first
    assert out["status"] == "accepted" and out["attempts"][1]["verdict"] == "PASS"


def test_resume_after_a_kill_continues_the_thread(tmp_path):
    graph = make_graph().copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "t1"}}
    ctx = _ctx(tmp_path)
    for update in graph.stream({"target": TARGET}, config, context=ctx, stream_mode="updates", durability="sync"):
        if "code" in update:
            break  # the process "dies" after the code step
    assert graph.get_state(config).next == ("write_tests",)
    out = graph.invoke(None, config, context=ctx)
    assert out["status"] == "accepted" and len(out["attempts"]) == 1


def test_unknown_target_is_rejected_with_the_reason(tmp_path):
    out = make_graph().invoke({"target": "zzqx unheard-of vxq service"}, context=_ctx(tmp_path))
    assert out["status"] == "rejected" and out["reason"].startswith("research:")


def test_whole_graph_through_the_openai_client(tmp_path, skeleton):
    from langchain_openai import ChatOpenAI
    from tests.doubles.openai_stub import tool_reply
    improved = skeleton["tools.py"] + "\n# reviewed: rules unchanged\n"
    with OpenAIStubServer([tool_reply("PackageFiles", {"files": {"tools.py": improved}, "notes": "ok"})]) as stub:
        client = ChatOpenAI(base_url=stub.url, api_key="test", model="stub-model", max_retries=0)
        out = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path, chat_models={"code": client}))
        assert stub.requests and stub.requests[0]["model"] == "stub-model"
    assert out["status"] == "accepted", out.get("reason")
    assert out["models"]["code"] == "stub-model"
    assert (Path(out["package_path"]) / "tools.py").read_text().endswith("# reviewed: rules unchanged\n")


def test_synth_batch_is_resumable_and_idempotent(tmp_path, capsys, monkeypatch):
    from envfactory.cli.main import main
    from envfactory.graphs.envgen import nodes as envgen
    fingerprints = []  # it reads the models file: once per target, shared by its thread id and run id
    real_fingerprint = envgen.settings_fingerprint
    monkeypatch.setattr(envgen, "settings_fingerprint", lambda ctx: fingerprints.append(real_fingerprint(ctx)) or fingerprints[-1])
    batch = tmp_path / "targets.txt"
    batch.write_text(f"# two services, one twice\n{TARGET}\n" + json.dumps({"target": "parcel shipping labels and tracking"})
                     + f"\n{TARGET}\n")
    argv = ["synth", "--batch", str(batch), "--out", str(tmp_path / "work"), "--catalog", str(tmp_path / "catalog"), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in first] == ["accepted", "accepted"] and not any(r["resumed"] for r in first)
    assert len(fingerprints) == 2
    settings = json.dumps(fingerprints[0], sort_keys=True, default=str)
    assert sorted(p.parent.name for p in (tmp_path / "work").glob("*/attempt-1")) == sorted(
        f"{Path(r['package']).name}-{envgen._digest(r['target'], Path(r['package']).name, settings)}" for r in first)
    attempts = sorted((tmp_path / "work").glob("*/attempt-*"))
    stamps = {p: p.stat().st_mtime_ns for p in attempts}
    assert main(argv) == 0  # the second run redoes nothing
    second = json.loads(capsys.readouterr().out)
    assert [r["resumed"] for r in second] == ["done before", "done before"] and len(fingerprints) == 4
    assert [r["package"] for r in second] == [r["package"] for r in first]
    assert {p: p.stat().st_mtime_ns for p in sorted((tmp_path / "work").glob("*/attempt-*"))} == stamps


def test_synth_rejects_a_malformed_batch_file(tmp_path, capsys):
    from envfactory.cli.main import main
    batch = tmp_path / "targets.jsonl"
    batch.write_text('{"target": "a library"}\n{"name": "no_target"}\n')
    assert main(["synth", "--batch", str(batch), "--out", str(tmp_path / "w")]) == 2
    assert "targets.jsonl:2: a JSON line needs a non-empty \"target\"" in capsys.readouterr().err


KOHA = "https://api.koha-community.org/"
HITS = {TARGET: [{"title": "Koha REST API", "url": KOHA, "snippet": "Patrons, items, checkouts and holds of a library."}]}


def _draft(spec: dict) -> AIMessage:
    return tool_call_message("BriefDraft", {
        "service": "library_lending", "summary": "Library circulation: patrons borrow items.",
        "facts": [{"kind": "entity", "text": "A patron borrows items.", "source_url": KOHA}], "spec": spec})


def test_every_agent_on_a_model(tmp_path, brief, skeleton):
    """Search, Code and Test agents each on their own (scripted) model; the test agent's first suite
    calls a tool that does not exist and goes back to it with the problem."""
    spec = brief.spec.model_dump()
    search = ScriptedChatModel(script=[_draft(spec)], model_name="searcher")
    code = ScriptedChatModel(script=[_files(**{"tools.py": skeleton["tools.py"]})], model_name="coder")
    from envfactory.envs.skeleton.package import generate_package
    suite = json.loads(generate_package(brief.spec)["tests.json"])
    wrong = {"cases": [{"name": "x", "steps": [{"call": "teleport_book", "args": {}, "expect": {"ok": True}}]}]}
    tester = ScriptedChatModel(script=[tool_call_message("TestSuite", wrong), tool_call_message("TestSuite", suite)],
                               model_name="tester")
    ctx = _ctx(tmp_path, search_backend="fixture", search_options={"data": HITS},
               chat_models={"search": search, "code": code, "test": tester})
    out = make_graph().invoke({"target": TARGET}, context=ctx)
    assert out["status"] == "accepted", out.get("reason")
    assert out["tiers"] == {"search": "model", "code": "model", "test": "model"}
    assert out["models"] == {"search": "searcher", "code": "coder", "test": "tester"}
    assert [p["id"] for p in out["prompts"]] == ["search_agent/brief", "code_agent/implement", "test_agent/write_tests"]
    assert "teleport_book" in tester.requests[1][-1].content  # the unknown tool was named back to the model
    # the test agent never saw the code agent's code
    seen = "\n".join(str(m.content) for m in tester.requests[0])
    assert "def " not in seen and "ctx." not in seen
    result = json.loads((Path(out["package_path"]) / "synthesis" / "synthesis.json").read_text())
    assert result["models"]["test"] == "tester" and result["tokens"] == out["tokens"] > 0


def test_a_spec_the_generator_cannot_build_is_rejected_at_design(tmp_path, brief):
    spec = brief.spec.model_dump()
    # a valid ApiSpec, but 50 seed rows cannot each have a different boolean
    spec["entities"][0]["fields"].append({"name": "is_staff", "type": "boolean", "description": "staff card", "unique": True})
    search = ScriptedChatModel(script=[_draft(spec)])
    ctx = _ctx(tmp_path, search_backend="fixture", search_options={"data": HITS}, chat_models={"search": search})
    out = make_graph().invoke({"target": TARGET}, context=ctx)
    assert out["status"] == "rejected"
    assert out["reason"].startswith("design: the spec cannot be turned into a package") and "'is_staff' allows only 2 values" in out["reason"]
    assert not out.get("attempts")


def test_disputed_test_cases_go_back_to_the_test_agent(tmp_path, brief, skeleton):
    from envfactory.envs.skeleton.package import generate_package
    suite = json.loads(generate_package(brief.spec)["tests.json"])
    bogus = json.loads(json.dumps(suite["cases"][0]))
    bogus["name"] = "a rule the brief never states"
    bogus["steps"][0]["expect"] = {"ok": False, "error_contains": "closed on Sundays"}
    tester = ScriptedChatModel(script=[tool_call_message("TestSuite", {"cases": suite["cases"] + [bogus]}),
                                       tool_call_message("TestSuite", {"cases": []})])   # the revision drops it
    code = ScriptedChatModel(script=[
        _files(**{"tools.py": skeleton["tools.py"]}),
        tool_call_message("PackageFiles", {"files": {"tools.py": skeleton["tools.py"]}, "notes": "no Sunday rule in the brief",
                                           "disputed_tests": [bogus["name"]]})])
    out = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path, chat_models={"code": code, "test": tester}))
    assert out["status"] == "accepted", out.get("reason")
    first, second = out["attempts"]
    assert first["verdict"] == "FAIL" and first["tests_passed"] == first["tests_total"] - 1
    assert second["verdict"] == "PASS" and second["tests_total"] == first["tests_total"] - 1
    revision_request = "\n".join(str(m.content) for m in tester.requests[1])
    assert "closed on Sundays" in revision_request and "no Sunday rule in the brief" in revision_request
    assert [p["id"] for p in out["prompts"]][-1] == "test_agent/revise_tests"


def test_a_spec_mirroring_benchmark_tools_is_refused(tmp_path, brief):
    spec = brief.spec.model_dump()
    names = ["update_reservation_flights", "get_tweet_comments"]  # tau2 airline, BFCL Twitter
    for op, name in zip(spec["operations"], names):
        op["name"] = name
    search = ScriptedChatModel(script=[_draft(spec)] * 2)
    ctx = _ctx(tmp_path, search_backend="fixture", search_options={"data": HITS}, chat_models={"search": search})
    out = make_graph().invoke({"target": TARGET}, context=ctx)
    assert out["status"] == "rejected"
    assert "tau2-bench airline: update_reservation_flights" in out["reason"] and "BFCL multi-turn TwitterAPI: get_tweet_comments" in out["reason"]
    allowed = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path, search_backend="fixture", allow_benchmark_overlap=True,
                                                                   search_options={"data": HITS}, chat_models={"search": search}))
    assert allowed["status"] == "accepted", allowed.get("reason")


def test_a_finished_target_is_new_work_under_other_settings(tmp_path):
    from envfactory.cli.synth_cmd import thread_id
    item = {"target": TARGET}
    offline = _ctx(tmp_path, offline=True)
    assert thread_id(item, offline) == thread_id(item, _ctx(tmp_path, offline=True))
    assert thread_id(item, offline) != thread_id(item, _ctx(tmp_path, chat_models={"code": ScriptedChatModel(model_name="m")}))
    assert thread_id(item, offline) != thread_id(item, _ctx(tmp_path, offline=True, max_rounds=5))


def test_tools_renamed_like_a_benchmark_by_the_model_fail_the_attempt(tmp_path, skeleton):
    manifest = json.loads(skeleton["env.json"])
    manifest["tools"][0]["name"] = "modify_pending_order_items"  # tau2-bench retail
    code = ScriptedChatModel(script=[_files(**{"tools.py": _broken_tools(skeleton)}),
                                     _files(**{"env.json": json.dumps(manifest), "tools.py": skeleton["tools.py"]}),
                                     _files(**{"env.json": skeleton["env.json"]})])
    out = make_graph().invoke({"target": TARGET}, context=_ctx(tmp_path, chat_models={"code": code}))
    assert len(out.get("attempts", [])) == 3, out.get("reason")
    renamed = out["attempts"][1]
    assert renamed["verdict"] == "FAIL" and "tau2-bench retail: modify_pending_order_items" in renamed["reason"]
    assert "rename them" in code.requests[2][-1].content
    assert out["attempts"][2]["verdict"] == "PASS" and out["status"] == "accepted"


def test_offline_research_ignores_the_web_backends_options(tmp_path):
    ctx = _ctx(tmp_path, search_backend="cached:ddgs", search_options={"cache_path": str(tmp_path / "c.sqlite")})
    out = make_graph().invoke({"target": TARGET}, context=ctx)
    assert out["status"] == "accepted", out.get("reason")
    assert out["tiers"]["search"] == "offline-corpus" and not (tmp_path / "c.sqlite").exists()
