"""Writes that resolve conflicts (INSERT/UPDATE OR REPLACE, REPLACE, IGNORE, FAIL, ABORT, ROLLBACK,
UPSERT) reach the change log: the tracked diff and hash equal full comparisons, and the pooled
connection's undo hands the next episode exactly the initial state."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from envfactory.envs import Environment
from envfactory.envs.runtime import state as st

UPSERTS = Path(__file__).parent / "fixtures" / "upserts"


@pytest.fixture(scope="module")
def upserts():
    return Environment.load(UPSERTS, trust=True)


def rows(conn, env) -> dict:
    """Every column of every row by rowid, and the AUTOINCREMENT counters: the whole logical state."""
    out = {n: conn.execute(f"SELECT rowid, * FROM main.{st.quote(n)} ORDER BY rowid").fetchall() for n in env.tables}
    out["sqlite_sequence"] = conn.execute("SELECT name, seq FROM main.sqlite_sequence ORDER BY name").fetchall()
    return out


def fresh_rows(env) -> dict:
    conn = env._scratch(env.initial_state)
    try:
        return rows(conn, env)
    finally:
        conn.close()


def changes(diff: st.StateDiff) -> list:
    return sorted((c.table, repr(c.key), c.kind, sorted(c.columns)) for c in diff.changes)


def test_a_replace_that_deletes_another_row_is_logged_and_undone(upserts):
    ep = upserts.episode()
    # email p2@x belongs to person 2: the REPLACE deletes person 2 (and, by cascade, code 'b')
    res = ep.call("write", {"statement": "people_insert_or_replace", "x": 7, "y": 2, "s": "z"})
    assert res.ok, res.error
    assert ep.diff().summary() == {"codes": {"insert": 0, "update": 0, "delete": 1},
                                   "people": {"insert": 1, "update": 0, "delete": 1}}
    assert ep.state_hash() == upserts.hash_of(ep.snapshot().data) != upserts.initial_hash
    conn = ep.conn
    ep.close()
    again = upserts.episode()
    assert again.conn is conn  # the pooled connection, brought back by undo
    assert rows(again.conn, upserts) == fresh_rows(upserts)
    assert again.state_hash() == upserts.initial_hash and again.diff().is_empty
    again.close()


def test_update_or_replace_of_a_table_without_a_declared_key(upserts):
    ep = upserts.episode()
    assert ep.call("write", {"statement": "tags_update_or_replace", "x": 1, "y": 0, "s": "b"}).ok  # row 1 takes 'b': row 2 goes
    assert changes(ep.diff()) == changes(upserts.diff_states(upserts.initial_state, ep.snapshot()))
    assert sorted(c.kind for c in ep.diff().changes) == ["delete", "update"]
    ep.close()


def test_with_a_package_trigger_diffs_and_hashes_compare_whole_states(tmp_path, upserts):
    """A package's own triggers keep recursive triggers off, so REPLACE deletes escape the log:
    the log is then not trusted, and the answers still come out right."""
    import shutil
    pkg = tmp_path / "upserts_with_trigger"
    shutil.copytree(UPSERTS, pkg)
    with open(pkg / "schema.sql", "a") as fh:
        fh.write("\nCREATE TRIGGER people_touch AFTER UPDATE ON people BEGIN SELECT 1; END;\n")
    env = Environment.load(pkg, trust=True)
    assert not env.log_complete
    ep = env.episode()
    assert ep.conn.execute("PRAGMA recursive_triggers").fetchone()[0] == 0
    assert ep.call("write", {"statement": "people_insert_or_replace", "x": 7, "y": 2, "s": "z"}).ok
    assert changes(ep.diff()) == changes(env.diff_states(env.initial_state, ep.snapshot()))
    assert ep.state_hash() == env.hash_of(ep.snapshot().data)
    ep.close()
    again = env.episode()
    assert rows(again.conn, env) == fresh_rows(env) and again.state_hash() == env.initial_hash
    again.close()


def untracked_run(env, sequence) -> tuple[list[bool], dict]:
    import sqlite3
    tools = __import__(env.tools["write"].fn.__module__)
    conn = env._scratch(env.initial_state)
    conn.execute("PRAGMA foreign_keys = ON")
    outcomes = []
    for args in sequence:
        conn.execute("BEGIN")
        try:
            conn.execute(tools.STATEMENTS[args["statement"]], {k: args[k] for k in "xys"})
            conn.execute("COMMIT")
            outcomes.append(True)
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes.append(False)
    try:
        return outcomes, rows(conn, env)
    finally:
        conn.close()


STATEMENTS = sorted(__import__("json").loads((UPSERTS / "env.json").read_text())["tools"][0]["input_schema"]
                    ["properties"]["statement"]["enum"])
writes = hs.lists(hs.fixed_dictionaries({"statement": hs.sampled_from(STATEMENTS), "x": hs.integers(0, 5),
                                         "y": hs.integers(0, 5), "s": hs.sampled_from(["a", "b", "c"])}),
                  min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=writes)
def test_tracked_state_equals_full_comparison_for_any_writes(upserts, sequence):
    ep = upserts.episode()
    outcomes = [ep.call("write", args).ok for args in sequence]  # a failed call rolls back
    # change tracking is invisible to the tools: the same statements on a bare connection (no
    # triggers) succeed and fail alike and leave the same rows
    assert (outcomes, rows(ep.conn, upserts)) == untracked_run(upserts, sequence)
    snap = ep.snapshot()
    assert changes(ep.diff()) == changes(upserts.diff_states(upserts.initial_state, snap))
    assert ep.diff().cells() == upserts.diff_states(upserts.initial_state, snap).cells()
    assert ep.state_hash() == upserts.hash_of(snap.data)
    ep.close()
    # the next episode gets the pooled connection back, undone: exactly a fresh load
    again = upserts.episode()
    assert rows(again.conn, upserts) == fresh_rows(upserts)
    assert again.state_hash() == upserts.initial_hash and again.diff().is_empty
    again.close()


# ---------------------------------------------------------------- hashes from changed rows

def test_every_table_hashes_from_its_changed_rows(upserts):
    """Integer, text, composite and implicit-rowid keys all have an index (so no hash rescans a table)."""
    assert all(upserts.section_indexes[n] is not None for n in upserts.tables)
    from envfactory.envs.runtime.cache import load_env
    from envfactory.envs.runtime.packages import catalog_names
    for name in catalog_names():
        env = load_env(name)
        assert [n for n, index in env.section_indexes.items() if index is None] == [], name


def test_a_collated_key_is_hashed_by_reading_the_table(tmp_path):
    """Python cannot reproduce a collation's order: such a table hashes by a scan, same hash."""
    import shutil
    pkg = tmp_path / "upserts_nocase"
    shutil.copytree(UPSERTS, pkg)
    schema = (pkg / "schema.sql").read_text().replace("code      TEXT PRIMARY KEY", "code TEXT PRIMARY KEY COLLATE NOCASE")
    (pkg / "schema.sql").write_text(schema)
    env = Environment.load(pkg, trust=True)
    assert env.section_indexes["codes"] is None and env.section_indexes["people"] is not None
    ep = env.episode()
    for s in ("B", "c", "A"):
        assert ep.call("write", {"statement": "codes_upsert", "x": 1, "y": 1, "s": s}).ok
    assert ep.state_hash() == env.hash_of(ep.snapshot().data)
    ep.close()
