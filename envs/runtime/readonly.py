"""A SQLite authorizer that allows reading and nothing else: for queries of a package's own tests
(``expect_state``) and for the parent's copies of states a sandbox child sent (whose schema, views and
bytes are the package's). No writes, no ATTACH of a file (``:memory:`` only), no extension loading."""
from __future__ import annotations

import sqlite3

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_DETACH}
_READ_PRAGMAS = {"table_info", "table_xinfo", "foreign_key_list", "index_list", "index_info", "index_xinfo",
                 "database_list", "foreign_key_check", "table_list"}
_VALUE_PRAGMAS = {"schema_version", "user_version", "page_count", "foreign_keys"}  # read, never set
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}


def read_only(action: int, arg1, arg2, db_name, source) -> int:
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if str(arg2).lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = str(arg1).lower()
        if name in _READ_PRAGMAS or (name in _VALUE_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_ATTACH:
        return sqlite3.SQLITE_OK if arg1 in ("", ":memory:") else sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_DENY


def query_read_only(conn: sqlite3.Connection, sql: str, params=()) -> list[tuple]:
    """Rows of ``sql`` run under ``read_only`` (an attempt to write or attach raises sqlite3.DatabaseError)."""
    conn.set_authorizer(read_only)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.set_authorizer(None)
