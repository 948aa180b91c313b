"""EnvGen's human review: the graph pauses before accepting (a LangGraph interrupt) with the diff and
the test results, and resumes on approve, reject, or feedback that becomes another repair round."""
from __future__ import annotations

import io
import json

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from envfactory.agents import code_agent, search_agent
from envfactory.agents.search_backends import make_backend
from envfactory.agents.testing import ScriptedChatModel, tool_call_message
from envfactory.cli.main import main
from envfactory.graphs.envgen import EnvGenContext, make_graph

TARGET = "a public library lending desk API"


@pytest.fixture(scope="module")
def skeleton():
    return code_agent.skeleton_files(search_agent.research(TARGET, backend=make_backend("corpus")).brief)


def _ctx(tmp_path, **kw) -> EnvGenContext:
    return EnvGenContext(catalog_dir=str(tmp_path / "catalog"), workspace_dir=str(tmp_path / "work"), review=True, **kw)


def _graph():
    return make_graph().copy(update={"checkpointer": InMemorySaver()})


def _files(tools_py: str):
    return tool_call_message("PackageFiles", {"files": {"tools.py": tools_py}, "notes": "scripted"})


def test_review_pauses_before_accepting_and_approve_accepts(tmp_path):
    graph, config = _graph(), {"configurable": {"thread_id": "t1"}}
    paused = graph.invoke({"target": TARGET}, config, context=_ctx(tmp_path))
    [question] = [i.value for i in paused["__interrupt__"]]
    assert question["tests"].endswith("passed") and question["code_tier"] and question["folder"]
    assert question["diff"] == ""                                # the skeleton tier changed nothing
    assert not (tmp_path / "catalog").exists()                   # nothing accepted while waiting
    done = graph.invoke(Command(resume="approve"), config, context=_ctx(tmp_path))
    assert done["status"] == "accepted" and done["review"] == "approved"
    assert (tmp_path / "catalog" / done["brief"]["spec"]["name"] / "verified.json").is_file()


def test_reject_and_offline_feedback_reject_with_the_reason(tmp_path):
    graph = _graph()
    for thread, answer, reason in [("a", {"approve": False, "feedback": "too few rules"}, "rejected by the reviewer: too few rules"),
                                   ("b", "add a refund rule", "no code model is configured")]:
        config = {"configurable": {"thread_id": thread}}
        graph.invoke({"target": TARGET}, config, context=_ctx(tmp_path / thread))
        out = graph.invoke(Command(resume=answer), config, context=_ctx(tmp_path / thread))
        assert out["status"] == "rejected" and reason in out["reason"]
        assert not (tmp_path / thread / "catalog").exists()


def test_feedback_becomes_a_repair_round_and_the_diff_shows_the_model_s_code(tmp_path, skeleton):
    code = ScriptedChatModel(script=[_files(skeleton["tools.py"] + "\n# first version\n"),
                                     _files(skeleton["tools.py"] + "\n# reviewed version\n")])
    ctx = _ctx(tmp_path, chat_models={"code": code})
    graph, config = _graph(), {"configurable": {"thread_id": "m"}}
    first = graph.invoke({"target": TARGET}, config, context=ctx)["__interrupt__"][0].value
    assert "+# first version" in first["diff"] and first["code_tier"] == "model" and first["attempt"] == 1
    second = graph.invoke(Command(resume={"feedback": "say it was reviewed"}), config, context=ctx)["__interrupt__"][0].value
    assert "say it was reviewed" in code.requests[1][-1].content   # the feedback was the repair brief
    assert "+# reviewed version" in second["diff"] and second["attempt"] == 2
    done = graph.invoke(Command(resume=True), config, context=ctx)
    assert done["status"] == "accepted" and len(done["attempts"]) == 2


def test_synth_review_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("r\n"))
    argv = ["synth", TARGET, "--offline", "--review", "--out", str(tmp_path / "w"), "--catalog", str(tmp_path / "c"), "--json"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "=== review:" in captured.err and "approve [a], reject [r]" in captured.err
    assert json.loads(captured.out)[0]["reason"] == "rejected by the reviewer"
    # off by default: no question asked
    assert main(["synth", TARGET, "--offline", "--out", str(tmp_path / "w2"), "--catalog", str(tmp_path / "c2")]) == 0
    assert "=== review:" not in capsys.readouterr().err
