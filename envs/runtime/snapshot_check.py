"""Is this a snapshot of this environment? Checked before ``Episode.restore`` touches the episode.

Restoring bytes that are not an SQLite database of the environment's schema (a truncated upload,
base64 of something else, a snapshot of another environment) used to leave the episode unusable
until reset. The check reads the bytes in a scratch connection: the SQLite header, an integrity
quick check, the same tables, indexes and triggers as the environment, and a change log that names
its tables. A refusal says why, and the episode stays as it was.
"""
from __future__ import annotations

import sqlite3
import weakref
from typing import Any

SQLITE_HEADER = b"SQLite format 3\x00"
_schemas: "weakref.WeakKeyDictionary[Any, frozenset]" = weakref.WeakKeyDictionary()


def _schema(conn: sqlite3.Connection) -> frozenset:
    return frozenset(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))


def _read(data: bytes):
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.deserialize(data)
    return conn


def snapshot_problem(env: Any, data: Any, dirty: Any = None) -> str | None:
    """Why ``data`` (with its change log ``dirty``) cannot be restored into an episode of ``env``, or None."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return f"the state must be bytes, got {type(data).__name__}"
    data = bytes(data)
    if len(data) < 512 or not data.startswith(SQLITE_HEADER):
        return f"{len(data)} bytes that are not an SQLite database"
    try:
        conn = _read(data)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                return f"a damaged SQLite database ({check})"
            schema = _schema(conn)
        finally:
            conn.close()
    except (sqlite3.Error, ValueError, OverflowError) as exc:
        return f"bytes SQLite cannot read as a database ({exc})"
    expected = _schemas.get(env)
    if expected is None:
        initial = _read(env.initial_state)
        try:
            expected = _schemas[env] = _schema(initial)
        finally:
            initial.close()
    if schema != expected:
        theirs, ours = {n for _, n, _, _ in schema}, {n for _, n, _, _ in expected}
        detail = (f"it has {', '.join(sorted(theirs - ours))} and lacks {', '.join(sorted(ours - theirs)) or 'nothing'}"
                  if theirs != ours else "its tables are defined differently")
        return f"a database of another schema than {env.name}'s ({detail})"
    if dirty is not None:
        if not isinstance(dirty, dict) or not all(isinstance(t, str) and t in env.tables for t in dirty):
            return f"its change log must map {env.name}'s table names to row ids"
        if not all(isinstance(r, int) and not isinstance(r, bool) for rows in dirty.values() for r in rows):
            return "its change log's row ids must be integers"
    return None
