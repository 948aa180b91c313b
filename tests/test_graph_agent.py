"""Model proposals for the tool graph: checked against real names, confirmed only by execution;
model re-classification of parameters is recorded as such."""
from __future__ import annotations

import json

from envfactory.agents.graph_agent import build_with_model, refine_classes
from envfactory.envs import Environment
from envfactory.envs.chains.confirm import build_tool_graph
from tests.doubles import ScriptedChatModel, tool_call_message


def _renamed_library(tmp_path):
    """The library with checkout_book's book_id renamed to title_id: no name or key matches it."""
    import shutil
    pkg = tmp_path / "lib"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    manifest = json.loads((pkg / "env.json").read_text())
    tool = next(t for t in manifest["tools"] if t["name"] == "checkout_book")
    tool["input_schema"]["properties"]["title_id"] = tool["input_schema"]["properties"].pop("book_id")
    tool["input_schema"]["required"] = ["member_id", "title_id"]
    (pkg / "env.json").write_text(json.dumps(manifest))
    (pkg / "tools.py").write_text((pkg / "tools.py").read_text().replace(
        "def checkout_book(ctx, member_id, book_id):", "def checkout_book(ctx, member_id, title_id):\n    book_id = title_id"))
    return Environment.load(pkg, trust=True)


def test_proposals_are_validated_then_confirmed_by_execution(tmp_path):
    env = _renamed_library(tmp_path)
    proposals = {"edges": [
        # same meaning, different names: a found book's id is what checkout calls title_id
        {"producer": "search_books", "field": "books[].book_id", "consumer": "checkout_book", "param": "title_id", "why": "same book"},
        # wrong meaning: a count is not a hold id; execution must refuse it
        {"producer": "search_books", "field": "total", "consumer": "cancel_hold", "param": "hold_id", "why": "bad"},
        # names that do not exist are dropped before anything runs
        {"producer": "teleport", "field": "x", "consumer": "get_book", "param": "book_id", "why": "bad"},
        {"producer": "get_book", "field": "isbn", "consumer": "get_book", "param": "isbn", "why": "bad"},
    ]}
    model = ScriptedChatModel(script=[tool_call_message("EdgeProposals", proposals)])
    graph, info = build_with_model(env, model)
    assert info["proposed"] == 2 and len(info["rejected"]) == 2
    assert "teleport -> get_book: unknown tool" in info["rejected"]
    llm = {(u, v, d["param"]): d for u, v, d in graph.edges() if d["source"] == "llm"}
    assert llm[("search_books", "checkout_book", "title_id")]["confirmed"]
    assert not llm[("search_books", "cancel_hold", "hold_id")]["confirmed"]
    assert info["prompt"]["id"] == "graph_agent/propose_edges"


def test_model_can_reclassify_parameters():
    tg = build_tool_graph(Environment.load("library"), confirm=False)
    assert tg.graph.nodes["cancel_hold"]["params"]["hold_id"]["origin"] == "tool"
    answer = {"params": [{"tool": "cancel_hold", "param": "hold_id", "origin": "user"},
                         {"tool": "find_member", "param": "email", "origin": "user"}]}
    changed = refine_classes(tg, ScriptedChatModel(script=[json.dumps(answer)]))
    assert changed == ["cancel_hold.hold_id: user"]
    info = tg.graph.nodes["cancel_hold"]["params"]["hold_id"]
    assert info["origin"] == "user" and info["rule"] == "llm"
