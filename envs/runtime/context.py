"""What a tool implementation receives as its first argument.

Tools are plain functions ``def tool(ctx, **arguments)``. They read and write ``ctx.db`` (a
sqlite-utils Database over the episode's connection) or use the small helpers below, raise
``ToolError`` for domain errors, and return a JSON value. They never commit: the runtime wraps
every call in a transaction and rolls it back when the call fails.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Iterable

import sqlite_utils

from envfactory.envs.runtime.errors import ToolError


class ToolContext:
    __slots__ = ("conn", "_db", "clock", "env_name", "_pks")

    def __init__(self, conn: sqlite3.Connection, clock: str, env_name: str, primary_keys: dict[str, str] | None = None):
        self.conn = conn
        self._db = None
        self.clock = clock
        self.env_name = env_name
        self._pks = primary_keys or {}

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the episode's connection (made on first use; its writes join our transaction)."""
        if self._db is None:
            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def now(self) -> str:
        """The environment's frozen clock (ISO 8601), so runs are reproducible."""
        return self.clock

    def today(self) -> str:
        return self.clock[:10]

    # -- reads
    def all(self, sql: str, params: Iterable[Any] | dict = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur]

    def one(self, sql: str, params: Iterable[Any] | dict = ()) -> dict[str, Any] | None:
        cur = self.conn.execute(sql, params)
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    def scalar(self, sql: str, params: Iterable[Any] | dict = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def get(self, table: str, key: Any, what: str | None = None, column: str | None = None) -> dict[str, Any]:
        """The row of ``table`` with this key, or a ToolError naming what does not exist."""
        column = column or self._pk(table)
        row = self.one(f'SELECT * FROM "{table}" WHERE "{column}" = ?', (key,))
        if row is None:
            raise ToolError(f"{what or table.rstrip('s')} {key!r} does not exist" if isinstance(key, str)
                            else f"{what or table.rstrip('s')} {key} does not exist")
        return row

    # -- writes
    def execute(self, sql: str, params: Iterable[Any] | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def insert(self, table: str, row: dict[str, Any]) -> int:
        cols = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join("?" for _ in row)
        return self.conn.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({marks})', tuple(row.values())).lastrowid

    def update(self, table: str, key: Any, values: dict[str, Any], column: str | None = None) -> None:
        column = column or self._pk(table)
        sets = ", ".join(f'"{c}" = ?' for c in values)
        self.conn.execute(f'UPDATE "{table}" SET {sets} WHERE "{column}" = ?', (*values.values(), key))

    def fail(self, message: str) -> None:
        raise ToolError(message)

    def _pk(self, table: str) -> str:
        if table in self._pks:
            return self._pks[table]
        pks = [r[1] for r in self.conn.execute(f'PRAGMA table_info("{table}")') if r[5]]
        return pks[0] if len(pks) == 1 else "rowid"
