"""Tool-graph confirmation and chain sampling on a tiny notebook package (tests/fixtures/notes):
tools that need an optional value to do anything, and tools taking two ids of the same kind."""
from __future__ import annotations

from pathlib import Path

import pytest

from envfactory.envs import Environment
from envfactory.envs.toolgraph import build_tool_graph

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
    from envfactory.envs.toolgraph import confirm_edges

    tg = build_tool_graph(Environment.load(NOTES, trust=True), confirm=False)
    confirm_edges(tg, optional_attempts=0)
    edge = _edge(tg, "create_note", "edit_note", "note_id")
    assert not edge["confirmed"] and "give at least one field" in edge["evidence"]
