"""Caches on the rollout and scoring path: a pooled episode connection comes back exactly at the
initial state (undone writes, or a reload when undoing does not apply), cached per-table hash text
and base rows give the same hash and diff as full scans, and the MCP tools and output check built
once behave like the adapter's and the SDK's own."""
from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from envfactory.envs import mcp as ef_mcp
from envfactory.envs.mcp import sessions as mcp_sessions
from envfactory.envs.runtime import state as st
from envfactory.envs.runtime.environment import Environment


@pytest.fixture(scope="module")
def library():
    return Environment.load("library")


def dump(conn, env) -> dict:
    """Every column of every row, by rowid: the logical state, volatile columns included."""
    return {n: conn.execute(f"SELECT rowid, * FROM main.{st.quote(n)} ORDER BY rowid").fetchall() for n in env.tables}


def initial_dump(env) -> dict:
    conn = env._scratch(env.initial_state)
    try:
        return dump(conn, env)
    finally:
        conn.close()


def write_a_lot(ep):
    """Inserts, updates and a delete, on several tables (the delete straight in SQL: no tool deletes)."""
    assert ep.call("checkout_book", {"member_id": 21, "book_id": 7}).ok
    hold = ep.call("place_hold", {"member_id": 21, "book_id": 5})
    assert hold.ok, hold.error
    assert ep.call("cancel_hold", {"hold_id": hold.output["hold_id"]}).ok
    assert ep.conn.execute("DELETE FROM holds WHERE hold_id = (SELECT min(hold_id) FROM holds)").rowcount == 1


def test_a_pooled_connection_comes_back_at_the_initial_state(library):
    reference = library.episode()
    write_a_lot(reference)
    want_cells, want_hash = reference.diff().cells(), reference.state_hash()
    reference.close()
    start = initial_dump(library)
    for _ in range(3):
        ep = library.episode()
        assert id(ep.conn) not in library._clean_idle
        assert dump(ep.conn, library) == start  # rows, rowids and volatile columns all as initially
        assert st.state_hash(ep.conn, library.tables) == library.initial_hash  # a full scan, no shortcut
        assert ep.diff().is_empty and not ep.calls
        write_a_lot(ep)  # the change log still fires after an undo, and new rows get the same ids
        assert ep.diff().cells() == want_cells and ep.state_hash() == want_hash
        conn = ep.conn
        ep.close()
        assert id(conn) in library._clean_idle  # undone on close, not reloaded on open


def test_a_connection_whose_log_is_incomplete_is_reloaded_not_undone(library):
    ep = library.episode()
    write_a_lot(ep)
    ep.restore(st.Snapshot(ep.snapshot().data, None))  # a restore without its change log
    conn = ep.conn
    ep.close()
    assert id(conn) not in library._clean_idle
    again = library.episode()
    assert dump(again.conn, library) == initial_dump(library) and again.diff().is_empty
    again.close()


def test_a_package_trigger_turns_undo_off(tmp_path):
    pkg = tmp_path / "library_with_trigger"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    with open(pkg / "schema.sql", "a") as fh:  # would fire again on an undo, so undo must not apply
        fh.write("\nCREATE TRIGGER books_touch AFTER UPDATE ON books BEGIN SELECT 1; END;\n")
    env = Environment.load(pkg, trust=True)
    assert not env._undo_ok
    ep = env.episode()
    write_a_lot(ep)
    conn = ep.conn
    ep.close()
    assert id(conn) not in env._clean_idle
    again = env.episode()
    assert dump(again.conn, env) == initial_dump(env) and again.state_hash() == env.initial_hash
    again.close()


def test_cached_hash_text_and_base_rows_match_full_scans(library):
    ep = library.episode()
    assert ep.state_hash() == library.initial_hash
    ep.call("checkout_book", {"member_id": 21, "book_id": 7})  # changes loans and books only
    dirty = set(st.dirty_rowids(ep.conn))
    assert dirty and dirty != set(library.tables)
    full = st.state_hash(ep.conn, library.tables)
    assert ep.state_hash() == full != library.initial_hash  # a changed table changes the hash
    slow = library.diff_states(library.initial_state, ep.conn.serialize())  # attached copies, EXCEPT
    assert ep.diff().cells() == slow.cells() and ep.diff().summary() == slow.summary()
    # a table written back to its initial values: dirty, yet hashed like the untouched initial state
    book = ep.conn.execute("SELECT * FROM books WHERE book_id = 3").fetchone()
    ep.conn.execute("UPDATE books SET title = 'x' WHERE book_id = 3")
    assert ep.state_hash() != full
    ep.conn.execute("UPDATE books SET title = ? WHERE book_id = 3", (book[1],))
    assert ep.state_hash() == full == st.state_hash(ep.conn, library.tables)
    ep.close()


def test_pooled_mcp_tools_answer_like_the_adapters_without_per_call_introspection(library, monkeypatch):
    from langchain_core.tools import base as lc_base
    from langchain_mcp_adapters.tools import load_mcp_tools

    async def go():
        ep = library.episode()
        async with ef_mcp.in_memory_session(ef_mcp.build_server(library, episode=ep)) as session:
            plain = {t.name: t for t in await load_mcp_tools(session, handle_tool_errors=True)}
            fast = {t.name: t for t in await ef_mcp.load_tools(session)}
            assert set(plain) == set(fast) and all(type(t).__name__ == "McpStructuredTool" for t in fast.values())
            # injected arguments (worked out once per coroutine code, not per tool) as the adapter's
            assert all(fast[n]._injected_args_keys == plain[n]._injected_args_keys == {"runtime"} for n in plain)
            calls = [("get_book", {"book_id": 3}), ("get_book", {"book_id": 999999}), ("get_book", {"book_id": "x"})]
            out = []
            for name, args in calls:
                call = {"type": "tool_call", "id": "c1", "name": name, "args": args}
                want = await plain[name].ainvoke(call)
                await fast[name].ainvoke(call)  # the first call may look at the tool once (cached)
                original, seen = lc_base._get_type_hints, []
                monkeypatch.setattr(lc_base, "_get_type_hints", lambda f, **k: seen.append(f) or original(f, **k))
                got = await fast[name].ainvoke(call)
                monkeypatch.undo()
                # the adapter's coroutine (string annotations to evaluate) is never introspected per call
                assert fast[name].coroutine not in seen and not any(getattr(f, "__annotations__", None) for f in seen)
                def same(m):  # content blocks carry random ids
                    blocks = [{k: v for k, v in b.items() if k != "id"} if isinstance(b, dict) else b for b in m.content]
                    return blocks, m.status, m.artifact
                assert same(got) == same(want)
                out.append(got.status)
            return out

    assert asyncio.run(go()) == ["success", "error", "error"]


@pytest.mark.parametrize("schema, portable", [
    ({"type": "object", "properties": {"a": {"type": "string", "enum": ["x", "y"]}}, "required": ["a"]}, True),
    ({"type": "object", "properties": {"a": {"type": "integer", "enum": [1, 2]}}}, False),  # True == 1 in Python
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"type": "string"}}}, False),
    ({"type": "object", "properties": {"a": {"type": "array", "items": [{"type": "string"}]}}}, False),
    ({"type": "object", "properties": {"a": {"type": "array", "prefixItems": [{"type": "string"}]}}}, False),
])
def test_fast_output_check_only_for_schemas_read_alike(schema, portable):
    assert (mcp_sessions._fast_output_check(json.dumps(schema, sort_keys=True)) is not None) is portable


def test_fast_output_check_never_accepts_what_jsonschema_rejects():
    from jsonschema import Draft202012Validator
    schema = {"type": "object", "required": ["id", "tags"], "additionalProperties": False,
              "properties": {"id": {"type": "integer", "minimum": 1}, "when": {"type": "string", "format": "date"},
                             "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                             "state": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["open", "closed"]}]}}}
    fast = mcp_sessions._fast_output_check(json.dumps(schema, sort_keys=True))
    slow = Draft202012Validator(schema)
    samples = [{"id": 1, "tags": []}, {"id": True, "tags": []}, {"id": 1.0, "tags": ["a"]}, {"id": 0, "tags": []},
               {"id": 1, "tags": ["a", "a"]}, {"id": 1, "tags": [1]}, {"id": 1, "tags": [], "x": 1},
               {"id": 1, "tags": [], "state": "gone"}, {"id": 1, "tags": [], "state": None}, {"tags": []},
               {"id": 1, "tags": [], "when": "not a date"}]
    for sample in samples:
        try:
            fast(sample)
            accepted = True
        except Exception:
            accepted = False
        if accepted:
            assert slow.is_valid(sample), sample


def test_matching_size_equals_brute_force_with_and_without_the_disjoint_shortcut():
    import itertools
    import random

    from envfactory.data.reward import _max_matching_size

    def brute(edges):
        for k in range(len(edges), 0, -1):
            for pick in itertools.combinations(edges, k):
                if len({i for i, _ in pick}) == k and len({j for _, j in pick}) == k:
                    return k
        return 0

    rng = random.Random(7)
    shapes = [[(0, 0), (1, 1), (2, 3)], [(0, 0), (0, 1), (1, 0)], [(0, 0), (1, 0), (2, 0)]]
    shapes += [sorted({(rng.randrange(4), rng.randrange(4)) for _ in range(rng.randrange(1, 8))}) for _ in range(60)]
    for edges in shapes:
        assert _max_matching_size(edges) == brute(edges), edges
