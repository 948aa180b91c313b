"""SQLite state: building the initial snapshot, change tracking, canonical hashes and diffs.

Every episode owns an in-memory SQLite database. Temp triggers (which are not part of the
serialized ``main`` database) record the rowids each write touches, so a diff against the
episode's base state costs O(changed rows) instead of a scan of every table.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from pydantic import BaseModel

DIRTY_TABLE = "temp._ef_dirty"


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[str, ...]
    pk: tuple[str, ...]           # primary-key columns; ("rowid",) when the table declares none
    volatile: frozenset[str] = frozenset()
    has_rowid: bool = True

    @property
    def compared(self) -> tuple[str, ...]:
        """Columns that count for hashes and diffs."""
        return tuple(c for c in self.columns if c not in self.volatile)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def read_tables(conn: sqlite3.Connection, volatile: dict[str, list[str]] | None = None,
                schema: str = "main") -> dict[str, TableInfo]:
    volatile = volatile or {}
    tables: dict[str, TableInfo] = {}
    rows = conn.execute(
        f"SELECT name, sql FROM {schema}.sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    for name, sql in rows:
        info = conn.execute(f"PRAGMA {schema}.table_info({quote(name)})").fetchall()
        columns = tuple(r[1] for r in info)
        pk = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        has_rowid = "WITHOUT ROWID" not in (sql or "").upper()
        tables[name] = TableInfo(name, columns, pk or ("rowid",), frozenset(volatile.get(name, [])), has_rowid)
    return tables


def install_change_tracking(conn: sqlite3.Connection, tables: dict[str, TableInfo]) -> None:
    """Create the dirty-row log and one temp trigger per table and write kind."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {DIRTY_TABLE}(tbl TEXT, rid INTEGER, PRIMARY KEY (tbl, rid)) WITHOUT ROWID")
    for t in tables.values():
        if not t.has_rowid:
            continue  # such tables fall back to a full comparison
        q = quote(t.name)
        lit = "'" + t.name.replace("'", "''") + "'"
        for event, refs in (("INSERT", ("new",)), ("DELETE", ("old",)), ("UPDATE", ("old", "new"))):
            # ON CONFLICT DO NOTHING, not OR IGNORE: an outer statement's own conflict clause (UPDATE OR
            # FAIL, INSERT OR ROLLBACK, an UPSERT) overrides a trigger's OR clause, and a row logged
            # twice would then fail the tool's write; an upsert clause is never overridden.
            body = " ".join(f"INSERT INTO _ef_dirty VALUES ({lit}, {r}.rowid) ON CONFLICT DO NOTHING;" for r in refs)
            trig = quote(f"_ef_{event.lower()}_{t.name}")
            conn.execute(f"CREATE TEMP TRIGGER IF NOT EXISTS {trig} AFTER {event} ON main.{q} BEGIN {body} END")


def relink_change_tracking(conn: sqlite3.Connection) -> None:
    """Make the temp triggers fire again after ``conn.deserialize`` replaced the main database.

    They survive the load, but SQLite may keep them attached to the old main schema, so writes
    would go unlogged (and diffs come out empty). Bumping the connection-private temp schema's
    version makes SQLite re-read it and attach them to the new tables (~0.1 ms, against ~1.5 ms to
    create them again).
    """
    version = conn.execute("PRAGMA temp.schema_version").fetchone()[0]
    conn.execute(f"PRAGMA temp.schema_version = {int(version) + 1}")


def dirty_rowids(conn: sqlite3.Connection) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for tbl, rid in conn.execute(f"SELECT tbl, rid FROM {DIRTY_TABLE}"):
        out.setdefault(tbl, set()).add(rid)
    return out


def clear_dirty(conn: sqlite3.Connection) -> None:
    conn.execute(f"DELETE FROM {DIRTY_TABLE}")


def restore_dirty(conn: sqlite3.Connection, dirty: dict[str, set[int]]) -> None:
    clear_dirty(conn)
    conn.executemany(f"INSERT INTO {DIRTY_TABLE} VALUES (?, ?)",
                     [(t, r) for t, rids in dirty.items() for r in rids])


# ---------------------------------------------------------------- canonical hash

def state_hash(conn: sqlite3.Connection, tables: dict[str, TableInfo], schema: str = "main",
               known: dict[str, bytes] | None = None) -> str:
    """sha256 over every table's compared columns, rows ordered by primary key.

    Rows are rendered by SQLite's ``json_array`` so the text is identical for identical values.
    ``known``: tables whose hashed text is already known (``table_section`` of the same content,
    e.g. tables an episode has not written since its initial state); they are not read again.
    """
    h = hashlib.sha256()
    for name in sorted(tables):
        section = known.get(name) if known else None
        h.update(section if section is not None else table_section(conn, tables[name], schema))
    return h.hexdigest()


def table_section_header(t: TableInfo) -> bytes:
    return f"\x00table {t.name} {json.dumps(t.compared)}\n".encode()


def table_section(conn: sqlite3.Connection, t: TableInfo, schema: str = "main") -> bytes:
    """The text ``state_hash`` hashes for one table: a header, then one line per row."""
    cols = t.compared
    parts = [table_section_header(t)]
    if cols:
        select = ", ".join(quote(c) for c in cols)
        order = ", ".join(quote(c) for c in t.pk)
        for (row,) in conn.execute(f"SELECT json_array({select}) FROM {schema}.{quote(t.name)} ORDER BY {order}"):
            parts.append(row.encode() + b"\n")
    return b"".join(parts)


def _order_key(value: Any) -> tuple:
    """Where SQLite's ORDER BY puts a value under the BINARY collation: NULLs, then numbers (ints
    and reals compared by value), then text (UTF-8 bytes, which order as Python's code points),
    then blobs."""
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, bytes(value))


class SectionIndex:
    """One table's hashed text (``table_section``) in a state, split into rows in hash order, so
    the text of a state that differs in a few rows is hashed without reading the other rows again.

    Only for rowid tables whose key order Python can reproduce: no ``COLLATE`` in the table's SQL
    (a collation would order text differently) and no NULL key (ties would be SQLite's choice).
    """

    __slots__ = ("table", "header", "keys", "blob", "offsets", "position")

    def __init__(self, t: TableInfo, header: bytes, entries: list[tuple[Any, int, bytes]]):
        self.table = t
        self.header = header
        self.keys = [k for k, _, _ in entries]
        self.blob = b"".join(line for _, _, line in entries)
        offsets = [0]
        for _, _, line in entries:
            offsets.append(offsets[-1] + len(line))
        self.offsets = offsets
        self.position = {rid: i for i, (_, rid, _) in enumerate(entries)}

    @classmethod
    def build(cls, conn: sqlite3.Connection, t: TableInfo, sql: str | None, schema: str = "main") -> "SectionIndex | None":
        if not t.has_rowid or not t.compared or "COLLATE" in (sql or "").upper():
            return None
        entries = []
        for rid, *key, line in conn.execute(_section_select(t, schema)):
            if None in key:
                return None
            entries.append((_entry_key(t, rid, key), rid, line.encode() + b"\n"))
        entries.sort(key=lambda e: e[0])
        index = cls(t, table_section_header(t), entries)
        # the order reproduced must be SQLite's own, or the index would hash other bytes
        return index if index.section == table_section(conn, t, schema) else None

    @property
    def section(self) -> bytes:
        """The whole ``table_section`` of the indexed state."""
        return self.header + self.blob

    def update_hash(self, h: "hashlib._Hash", conn: sqlite3.Connection, rowids: set[int], schema: str = "main") -> bool:
        """Feed ``h`` the section of the current state, in which only ``rowids`` may differ from
        this index's state. False (``h`` untouched) when a changed row has a NULL key."""
        ids = list(rowids)
        new = []
        for rid, *key, line in conn.execute(_section_select(self.table, schema, len(ids)), ids):
            if None in key:
                return False
            new.append((_entry_key(self.table, rid, key), line.encode() + b"\n"))
        new.sort(key=lambda e: e[0])
        inserts = [(bisect.bisect_left(self.keys, k), line) for k, line in new]
        removed = sorted(self.position[r] for r in ids if r in self.position)
        view, off = memoryview(self.blob), self.offsets
        h.update(self.header)
        start = i = j = 0
        while i < len(inserts) or j < len(removed):
            at_insert = inserts[i][0] if i < len(inserts) else len(off)
            at_removed = removed[j] if j < len(removed) else len(off)
            if at_insert <= at_removed:  # a new or changed row goes before the old row at that place
                h.update(view[off[start]:off[at_insert]])
                h.update(inserts[i][1])
                start, i = at_insert, i + 1
            else:
                h.update(view[off[start]:off[at_removed]])
                start, j = at_removed + 1, j + 1
        h.update(view[off[start]:])
        return True


def _section_select(t: TableInfo, schema: str, rowids: int | None = None) -> str:
    """Rows as (rowid, key columns..., hashed line); ``rowids``: that many ``?`` to select by rowid."""
    keys = ", ".join("rowid" if c == "rowid" else quote(c) for c in t.pk)
    where = f" WHERE rowid IN ({','.join('?' * rowids)})" if rowids else ""
    return f"SELECT rowid, {keys}, json_array({', '.join(quote(c) for c in t.compared)}) FROM {schema}.{quote(t.name)}{where}"


def _entry_key(t: TableInfo, rowid: int, key: list) -> Any:
    if t.pk == ("rowid",):
        return rowid
    return tuple(_order_key(v) for v in key)


def state_hash_from_changes(conn: sqlite3.Connection, tables: dict[str, TableInfo], sections: dict[str, bytes],
                            indexes: dict[str, SectionIndex | None], dirty: dict[str, set[int]]) -> str:
    """``state_hash`` of a state that differs from the one ``sections`` and ``indexes`` describe
    only in the ``dirty`` rows: untouched tables hash their known text, touched ones read just the
    changed rows (whole tables only where no index applies). Same bytes hashed, same hash."""
    h = hashlib.sha256()
    for name in sorted(tables):
        rids = dirty.get(name)
        if not rids:
            h.update(sections[name])
            continue
        index = indexes.get(name)
        if index is None or not index.update_hash(h, conn, rids):
            h.update(table_section(conn, tables[name]))
    return h.hexdigest()


# ---------------------------------------------------------------- diffs

class RowChange(BaseModel):
    table: str
    key: Any                       # primary-key value (a list for composite keys)
    kind: Literal["insert", "update", "delete"]
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    columns: list[str] = []        # for updates: the compared columns that changed


class StateDiff(BaseModel):
    """Cell-level difference from a base state to another state (volatile columns excluded)."""

    changes: list[RowChange] = []
    keys: dict[str, list[str]] = {}    # primary-key columns per table, so inserts compare by content

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for c in self.changes:
            counts = out.setdefault(c.table, {"insert": 0, "update": 0, "delete": 0})
            counts[c.kind] += 1
        return out

    def cells(self) -> list[tuple]:
        """The change set as hashable cells, the unit of partial credit.

        Updates give one cell per changed column, deletes one cell per row, and inserts one cell
        per row keyed by content *without* the primary key, so two runs that create the same
        records in a different order (and so get different ids) still agree.
        """
        cells: list[tuple] = []
        for c in self.changes:
            key = _freeze(c.key)
            if c.kind == "update":
                cells += [("update", c.table, key, col, _freeze(c.after[col])) for col in c.columns]
            elif c.kind == "delete":
                cells.append(("delete", c.table, key))
            else:
                pks = set(self.keys.get(c.table, ()))
                content = tuple(sorted((k, _freeze(v)) for k, v in (c.after or {}).items() if k not in pks))
                cells.append(("insert", c.table, content))
        return cells


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 3.0 and 3 are the same state
    return value


def _key(row: dict[str, Any], t: TableInfo, rowid: int | None) -> Any:
    if t.pk == ("rowid",):
        return rowid
    vals = [row[c] for c in t.pk]
    return vals[0] if len(vals) == 1 else vals


def _row_entries(conn, t: TableInfo, schema: str, rowids: Iterable[int] | None) -> Iterable[tuple[Any, Any, dict[str, Any]]]:
    """(rowid, frozen key, compared columns plus key columns) per row, all rows or those ``rowids``."""
    cols = t.compared
    select = ", ".join(["rowid"] * t.has_rowid + [quote(c) for c in t.columns])
    sql = f"SELECT {select} FROM {schema}.{quote(t.name)}"
    if rowids is not None:
        rowids = list(rowids)
        if not rowids:
            return
        cursor = conn.execute(sql + f" WHERE rowid IN ({','.join('?' * len(rowids))})", rowids)
    else:
        cursor = conn.execute(sql)
    for raw in cursor:
        rowid = raw[0] if t.has_rowid else None
        yield rowid, *_keyed_row(t, cols, rowid, raw[1:] if t.has_rowid else raw)


def _keyed_row(t: TableInfo, cols: tuple[str, ...], rowid: int | None, values: tuple) -> tuple[Any, dict[str, Any]]:
    """A row's frozen key and its ``cols`` (``t.compared``) plus key columns, from every column's value."""
    full = dict(zip(t.columns, values))
    return _freeze(_key(full, t, rowid)), {c: full[c] for c in cols} | {c: full[c] for c in t.pk if c in full}


def _rows_by_key(conn, t: TableInfo, schema: str, rowids: Iterable[int] | None) -> dict[Any, dict[str, Any]]:
    return {key: row for _, key, row in _row_entries(conn, t, schema, rowids)}


RowsByRowid = dict[str, dict[int, tuple[Any, dict[str, Any]]]]


def rows_by_rowid(conn: sqlite3.Connection, tables: dict[str, TableInfo], schema: str = "main") -> RowsByRowid:
    """Every row of every rowid table as ``diff_from_rows`` reads a base state: rowid -> (key, row)."""
    return {name: {rid: (key, row) for rid, key, row in _row_entries(conn, t, schema, None)}
            for name, t in tables.items() if t.has_rowid}


def rows_by_rowid_from_values(tables: dict[str, TableInfo], values: dict[str, dict[int, tuple]]) -> RowsByRowid:
    """``rows_by_rowid`` of a state already read as every column's value by rowid per table (no
    second scan of the database)."""
    rows: RowsByRowid = {}
    for name, t in tables.items():
        if t.has_rowid:
            cols = t.compared
            rows[name] = {rid: _keyed_row(t, cols, rid, row) for rid, row in values[name].items()}
    return rows


def diff_from_rows(conn: sqlite3.Connection, tables: dict[str, TableInfo], base_rows: RowsByRowid,
                   dirty: dict[str, set[int]], current: str = "main") -> StateDiff:
    """``diff_schemas`` against a base state held as ``rows_by_rowid`` (every table with a rowid),
    so the base need not be attached: only the dirty rows of ``current`` are read."""
    changes: list[RowChange] = []
    for name in sorted(tables):
        rids = dirty.get(name)
        if not rids:
            continue
        t, base = tables[name], base_rows[name]
        before = {hit[0]: dict(hit[1]) for hit in (base.get(rid) for rid in rids) if hit is not None}
        changes += _compare(t, before, _rows_by_key(conn, t, current, rids))
    return StateDiff(changes=changes, keys={n: list(t.pk) for n, t in tables.items()})


def _compare(t: TableInfo, before: dict, after: dict) -> list[RowChange]:
    changes: list[RowChange] = []
    cols = t.compared
    for key in sorted(set(before) | set(after), key=repr):
        b, a = before.get(key), after.get(key)
        if b is None:
            changes.append(RowChange(table=t.name, key=key, kind="insert", after=a))
        elif a is None:
            changes.append(RowChange(table=t.name, key=key, kind="delete", before=b))
        else:
            changed = [c for c in cols if _freeze(b.get(c)) != _freeze(a.get(c))]
            if changed:
                changes.append(RowChange(table=t.name, key=key, kind="update", before=b, after=a, columns=changed))
    return changes


def diff_schemas(conn: sqlite3.Connection, tables: dict[str, TableInfo], base: str, current: str,
                 dirty: dict[str, set[int]] | None = None) -> StateDiff:
    """Diff two schemas attached to one connection (``base`` -> ``current``).

    With ``dirty`` (rowids written since ``base``), only those rows are read. Without it, the
    rows that differ are found with SQL ``EXCEPT`` in both directions, still inside SQLite.
    """
    changes: list[RowChange] = []
    for name in sorted(tables):
        t = tables[name]
        if dirty is not None and t.has_rowid:
            rids = dirty.get(name)
            if not rids:
                continue
            before = _rows_by_key(conn, t, base, rids)
            after = _rows_by_key(conn, t, current, rids)
        else:
            before, after = _except_rows(conn, t, base, current)
        changes += _compare(t, before, after)
    return StateDiff(changes=changes, keys={n: list(t.pk) for n, t in tables.items()})


def _except_rows(conn, t: TableInfo, base: str, current: str):
    """Rows whose key or compared columns differ between two schemas, found by SQL EXCEPT.

    EXCEPT treats NULLs as equal, and a row changed only in volatile columns is not selected.
    """
    keycols = list(t.pk)
    names = list(dict.fromkeys(keycols + list(t.compared)))
    select = ", ".join("rowid" if c == "rowid" else quote(c) for c in names)
    q = quote(t.name)

    def side(a: str, b: str) -> dict:
        out = {}
        for raw in conn.execute(f"SELECT {select} FROM {a}.{q} EXCEPT SELECT {select} FROM {b}.{q}"):
            row = dict(zip(names, raw))
            key = row["rowid"] if keycols == ["rowid"] else (
                row[keycols[0]] if len(keycols) == 1 else [row[c] for c in keycols])
            row.pop("rowid", None)
            out[_freeze(key)] = row
        return out

    return side(base, current), side(current, base)


@dataclass
class Snapshot:
    """A frozen copy of an episode's state: the database bytes and what changed since base."""

    data: bytes
    dirty: dict[str, set[int]] | None = None
    hash: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
