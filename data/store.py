"""A resumable, idempotent record store.

Records live in one SQLite file keyed by their deterministic key: writing a record twice keeps
one copy, a killed batch loses at most the record being written (each write is one transaction),
and a resumed batch asks ``has(key)`` to skip finished work.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Iterator

import sqlite_utils

from envfactory.data.records import TrajectoryRecord


class StoreError(ValueError):
    """A record store that cannot be read: missing (for a reader), or a file that is not one."""


class RecordStore:
    def __init__(self, path: str | Path, *, create: bool = True):
        """``create=False`` for readers (export, report): a missing store is an error, never a new
        empty one that would export an empty dataset."""
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"record store {self.path} is a folder; give the .sqlite file")
        if not create and not self.path.is_file():
            raise StoreError(f"no record store at {self.path} (run `envfactory generate` or `envfactory run` first, "
                             "or give --workspace / --store)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._open(conn, create)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path} is not a record store ({exc})") from None

    def _open(self, conn: sqlite3.Connection, create: bool) -> None:
        conn.execute("PRAGMA journal_mode=WAL")   # a kill mid-write leaves the file consistent
        conn.execute("PRAGMA synchronous=NORMAL")
        self.db = sqlite_utils.Database(conn)
        if "records" not in self.db.table_names():
            if not create:
                raise sqlite3.DatabaseError("it has no records table")
            self.db["records"].create({"key": str, "env": str, "status": str, "mode": str, "created_at": str, "body": str},
                                      pk="key", not_null={"env", "status", "body"})
            self.db["records"].create_index(["env", "status"])
        elif "body" not in self.db["records"].columns_dict:
            raise sqlite3.DatabaseError("its records table is not ours")

    def put(self, record: TrajectoryRecord) -> bool:
        """Insert unless the key exists; returns True when the record is new."""
        row = {"key": record.key, "env": "+".join(e.name for e in record.envs), "status": record.status,
               "mode": record.mode, "created_at": record.provenance.created_at, "body": record.model_dump_json()}
        with self._lock:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO records (key, env, status, mode, created_at, body) VALUES (?, ?, ?, ?, ?, ?)",
                tuple(row.values()))
            return cur.rowcount == 1

    def has(self, key: str) -> bool:
        with self._lock:
            return bool(self.db.execute("SELECT 1 FROM records WHERE key = ?", (key,)).fetchone())

    def get(self, key: str) -> TrajectoryRecord | None:
        with self._lock:
            row = self.db.execute("SELECT body FROM records WHERE key = ?", (key,)).fetchone()
        return TrajectoryRecord.model_validate_json(row[0]) if row else None

    def query(self, env: str | None = None, status: str | None = None) -> Iterator[TrajectoryRecord]:
        """Records (of an environment, of a status) in key order: the same records, the same order."""
        where, params = [], []
        if env:
            where.append("(env = ? OR env LIKE ? OR env LIKE ? OR env LIKE ?)")
            params += [env, f"{env}+%", f"%+{env}", f"%+{env}+%"]
        if status:
            where.append("status = ?")
            params.append(status)
        # key order, not creation order: concurrent slots finish in a different order on every run, and
        # the same records must give the same export files (and the same training data order)
        sql = "SELECT body FROM records" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY key"
        with self._lock:
            rows = self.db.execute(sql, params).fetchall()
        for (body,) in rows:
            yield TrajectoryRecord.model_validate_json(body)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {s: n for s, n in self.db.execute("SELECT status, COUNT(*) FROM records GROUP BY status")}

    def __len__(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def close(self) -> None:
        self.db.conn.close()
