"""What an imported call changed, at the cost of what it touched rather than of the whole state.

Each top-level dict attribute of an episode's instance (a table of entities) is swapped for a
``TrackedDict`` when nothing else refers to it: a dict that notes which keys a call reached
(read, written or deleted) and whether it handed out all its values. After a call only those
rows are converted to JSON again and compared; other attributes (scalars, lists, objects, dicts
something else also refers to) are converted whole. The state hash is a sum of per-row digests, so
it follows the changed rows too; ``hash_tables`` gives the same hash for a full JSON state.
"""
from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

_MOD = 1 << 256


class TrackedDict(dict):
    """A dict that notes the keys calls reach; copies (pickle, deepcopy, ``copy()``) are plain dicts."""

    __slots__ = ("touched", "everything")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.touched: set = set()
        self.everything = False

    def __reduce__(self):
        return (dict, (dict(self),))

    def __getitem__(self, key):
        self.touched.add(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self.touched.add(key)
        return dict.get(self, key, default)

    def setdefault(self, key, default=None):
        self.touched.add(key)
        return dict.setdefault(self, key, default)

    def pop(self, key, *default):
        self.touched.add(key)
        return dict.pop(self, key, *default)

    def __setitem__(self, key, value):
        self.touched.add(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key):
        self.touched.add(key)
        dict.__delitem__(self, key)

    def _all(self):
        self.everything = True

    def values(self):
        self.everything = True
        return dict.values(self)

    def items(self):
        self.everything = True
        return dict.items(self)

    def popitem(self):
        self.everything = True
        return dict.popitem(self)

    def clear(self):
        self.everything = True
        dict.clear(self)

    def update(self, *args, **kwargs):
        self.everything = True
        dict.update(self, *args, **kwargs)

    def __ior__(self, other):
        self.everything = True
        return dict.__ior__(self, other)

    def copy(self):
        self.everything = True
        return dict(self)


def wrap_tables(instance: Any) -> None:
    """Swap the instance's unshared top-level dicts for TrackedDicts (shared ones stay as they are:
    a copy would split them from whatever else refers to them)."""
    attrs = vars(instance)
    for name, value in list(attrs.items()):
        # references: the instance's __dict__, ``value`` here, the list() items, getrefcount's argument
        if type(value) is dict and sys.getrefcount(value) <= 4:
            attrs[name] = TrackedDict(value)


def row_digest(table: str, key: Any, row_bytes: bytes) -> int:
    return int.from_bytes(hashlib.sha256(table.encode() + b"\0" + repr(key).encode() + b"\0" + row_bytes).digest(), "big")


def table_digest(table: str) -> int:
    return int.from_bytes(hashlib.sha256(b"table\0" + table.encode()).digest(), "big")


def canonical_row(row: Any) -> bytes:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hash_tables(tables: dict[str, dict[Any, Any]]) -> str:
    """The state hash of tables of rows (a sum of per-row digests: order-free and updatable)."""
    total = 0
    for table, rows in tables.items():
        total += table_digest(table)
        for key, row in rows.items():
            total += row_digest(table, key, canonical_row(row))
    return f"{total % _MOD:064x}"
