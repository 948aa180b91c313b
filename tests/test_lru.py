"""The bounded cache behind episodes by id, gold references and per-request rollouts."""
from __future__ import annotations

import threading

from envfactory.envs.runtime.lru import BoundedCache


def test_least_recently_used_goes_first_and_is_released():
    released = []
    cache = BoundedCache(2, on_evict=released.append)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"      # "a" is now the most recent
    cache.put("c", "C")
    assert released == ["B"] and "b" not in cache and len(cache) == 2
    assert cache.get("b", "missing") == "missing"


def test_get_or_make_makes_once_per_key_under_the_lock():
    made = []
    cache = BoundedCache(8)

    def make():
        made.append(1)
        return object()

    seen = []
    threads = [threading.Thread(target=lambda: seen.append(cache.get_or_make("k", make, hold_lock=True))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len({id(v) for v in seen}) == 1


def test_a_failed_make_leaves_nothing_behind():
    cache = BoundedCache(2)

    def boom():
        raise RuntimeError("no")

    for hold in (True, False):
        try:
            cache.get_or_make("k", boom, hold_lock=hold)
        except RuntimeError:
            pass
        assert "k" not in cache
