"""EnvGen never stores a fault as a verdict: a model endpoint that stays down, or an internal error
(``ast.parse`` racing in threads on Python 3.11), stops the target's thread resumably ("not done" /
"error"), and the rerun finishes it; a resumed thread first removes what a killed run left half-made."""
from __future__ import annotations

import ast
import json
import threading
import time
from pathlib import Path

import pytest

from envfactory.cli.synth_cmd import synthesize, synthesize_batch, thread_id
from envfactory.envs.runtime.pyparse import parse_python
from envfactory.graphs.envgen import EnvGenContext
from envfactory.graphs.envgen import nodes as envgen
from tests.doubles import ScriptedChatModel, tool_call_message

TARGET = "a public library lending desk API"


def _ctx(tmp_path: Path, **kw) -> EnvGenContext:
    return EnvGenContext(catalog_dir=str(tmp_path / "catalog"), workspace_dir=str(tmp_path / "work"), **kw)


class _Flaky(ScriptedChatModel):
    """Fails with a connection reset for its first ``down`` calls, then replays its script."""

    down: int = 0
    failed: int = 0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if self.failed < self.down:
            self.failed += 1
            raise ConnectionResetError("connection reset by peer")
        return super()._generate(messages, stop, run_manager, **kwargs)


def _unchanged_tools(tmp_path) -> dict:
    from envfactory.agents import code_agent, search_agent
    from envfactory.agents.search_backends import make_backend
    brief = search_agent.research(TARGET, backend=make_backend("corpus")).brief
    skeleton = code_agent.skeleton_files(brief)
    return tool_call_message("PackageFiles", {"files": {"tools.py": skeleton["tools.py"]}, "notes": "same"})


def test_a_code_model_that_stays_down_leaves_the_target_not_done_then_the_rerun_accepts_it(tmp_path):
    code = _Flaky(script=[_unchanged_tools(tmp_path)], down=2)
    ctx = _ctx(tmp_path, chat_models={"code": code}, models={"code": {"max_retries": 1, "retry_wait": 0.001}})
    checkpoints = tmp_path / "work" / "checkpoints.sqlite"
    [first] = synthesize_batch([{"target": TARGET}], ctx, checkpoints, show=False)
    assert first["status"] == "not done" and "code: " in first["reason"] and "rerun to continue" in first["reason"]
    assert code.failed == 2 and not list((tmp_path / "work").rglob("synthesis.json"))  # no verdict written
    [second] = synthesize_batch([{"target": TARGET}], ctx, checkpoints, show=False)
    assert second["status"] == "accepted" and second["resumed"] == "continued", second
    assert second["attempts"] == 1  # the failed calls cost no attempt


def test_an_internal_error_is_not_a_verdict(tmp_path, monkeypatch):
    real = envgen.code_agent.skeleton_files
    calls = []

    def racing(brief, seed=0):  # what Python 3.11 raised when two threads parsed at once
        calls.append(1)
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=18, after=12)")
        return real(brief, seed)

    monkeypatch.setattr(envgen.code_agent, "skeleton_files", racing)
    ctx = _ctx(tmp_path, offline=True)
    checkpoints = tmp_path / "work" / "checkpoints.sqlite"
    [first] = synthesize_batch([{"target": TARGET}], ctx, checkpoints, show=False)
    assert first["status"] == "error" and "recursion depth mismatch" in first["reason"]
    [second] = synthesize_batch([{"target": TARGET}], ctx, checkpoints, show=False)
    assert second["status"] == "accepted" and second["resumed"] == "continued"


def test_parsing_is_serialized_across_threads(monkeypatch):
    """Every ``ast.parse`` of ours runs alone: the lock, not luck, keeps the 3.11 race away."""
    inside, most = [0], [0]
    real = ast.parse

    def watched(*args, **kwargs):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.002)  # a window for another thread to come in
        try:
            return real(*args, **kwargs)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(ast, "parse", watched)
    threads = [threading.Thread(target=lambda: [parse_python("x = 1\n") for _ in range(20)]) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert most[0] == 1


class _Stop(Exception):
    pass


def _stop_after(node: str):
    def on_step(item, name):
        if name == node:
            raise _Stop(name)
    return on_step


def test_a_resumed_thread_removes_what_a_killed_run_left(tmp_path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    from envfactory.graphs.envgen import make_graph
    ctx = _ctx(tmp_path, offline=True)
    item = {"target": TARGET}
    work, catalog = tmp_path / "work", tmp_path / "catalog"
    with SqliteSaver.from_conn_string(str(tmp_path / "cp.sqlite")) as saver:
        graph = make_graph().copy(update={"checkpointer": saver})
        with pytest.raises(_Stop):
            synthesize(graph, item, ctx, _stop_after("write_tests"))  # "killed" before the sandboxed test
        run_id = graph.get_state({"configurable": {"thread_id": thread_id(item, ctx)}}).values["run_id"]
        run = work / run_id
        left = [run / "attempt-1", run / "attempt-2", catalog / f"library_lending.staging-{run_id}"]
        for folder in left:
            folder.mkdir(parents=True)
            (folder / "tools.py").write_text("half a fi")
        (run / "synthesis.json.tmp").write_text("{")
        other = catalog / "library_lending.staging-another-run"  # another thread's: not ours to touch
        other.mkdir(parents=True)
        out = synthesize(graph, item, ctx)
    assert out["status"] == "accepted" and out["resumed"] == "continued"
    assert (run / "attempt-1" / "env.json").is_file() and (run / "attempt-1.report.json").is_file()
    assert not (run / "attempt-2").exists() and not left[2].exists() and not (run / "synthesis.json.tmp").exists()
    assert other.exists()


def test_a_thread_stopped_before_design_loses_its_unnamed_leftover(tmp_path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    from envfactory.graphs.envgen import make_graph
    ctx = _ctx(tmp_path, offline=True)
    item = {"target": TARGET}
    unnamed = tmp_path / "work" / f"unnamed-{envgen._digest(TARGET)}"
    with SqliteSaver.from_conn_string(str(tmp_path / "cp.sqlite")) as saver:
        graph = make_graph().copy(update={"checkpointer": saver})
        with pytest.raises(_Stop):
            synthesize(graph, item, ctx, _stop_after("research"))
        unnamed.mkdir(parents=True)
        (unnamed / "synthesis.json").write_text(json.dumps({"status": "rejected", "reason": "stale"}))
        out = synthesize(graph, item, ctx)
    assert out["status"] == "accepted" and not unnamed.exists()


def test_the_cli_says_how_to_finish_unfinished_targets(tmp_path, capsys, monkeypatch):
    from envfactory.cli import synth_cmd
    from envfactory.cli.main import main
    from envfactory.agents.transient import ModelUnavailableError

    def down(graph, item, ctx, on_step=None):
        raise ModelUnavailableError("research: the model endpoint failed 5 time(s), last: HTTP 503", 5)

    monkeypatch.setattr(synth_cmd, "synthesize", down)
    rc = main(["synth", TARGET, "--out", str(tmp_path / "w"), "--catalog", str(tmp_path / "c"), "--offline"])
    out = capsys.readouterr().out
    assert rc == 1 and out.startswith("not done") and "rerun the same command to continue them" in out
