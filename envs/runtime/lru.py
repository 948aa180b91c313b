"""A bounded, thread-safe cache for the things the runtime keeps per key (episodes by id, gold
references by chain, task states by row): least recently used entries go first, and what they
hold can be released on the way out (an episode's connection, a rollout's record)."""
from __future__ import annotations

import threading
from typing import Any, Callable, Hashable

from cachetools import LRUCache


class _Evicting(LRUCache):
    def __init__(self, maxsize: int, on_evict: Callable[[Any], None] | None):
        super().__init__(maxsize)
        self._on_evict = on_evict

    def popitem(self):
        key, value = super().popitem()  # only called by the cache itself, to make room
        if self._on_evict is not None:
            self._on_evict(value)
        return key, value


class BoundedCache:
    def __init__(self, maxsize: int, on_evict: Callable[[Any], None] | None = None):
        self._items = _Evicting(maxsize, on_evict)
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            return self._items.get(key, default)

    def pop(self, key: Hashable, default: Any = None) -> Any:
        """Take the value out (no ``on_evict``: the caller now holds it)."""
        with self._lock:
            return self._items.pop(key, default)

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value

    def get_or_make(self, key: Hashable, make: Callable[[], Any], *, hold_lock: bool = False) -> Any:
        """The cached value, or ``make()``'s. With ``hold_lock`` nobody else makes the same value at
        the same time (for values that must exist once, like an episode per request); without it a
        slow ``make`` does not block other keys (values that are deterministic anyway)."""
        with self._lock:
            if key in self._items:
                return self._items[key]
            if hold_lock:
                value = self._items[key] = make()
                return value
        value = make()
        with self._lock:
            return self._items.setdefault(key, value)

    def pop(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            return self._items.pop(key, default)

    def keys(self) -> list:
        with self._lock:
            return list(self._items.keys())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items
