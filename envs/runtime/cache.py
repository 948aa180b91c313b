"""The process's one cache of loaded environments, shared by QueryGen, the exports (verl, TRL) and
the benchmarks.

Loading an environment imports its tool code and builds its initial state: do it once per name and
process, so every caller holds the same ``Environment`` (and shares its idle connections and its
cached initial rows). Bounded, so a long-lived trainer process that sees many environments does not
keep them all. Thread-safe: a name being loaded is loaded once while other threads asking for it
wait, and other names load (or are found) meanwhile.
"""
from __future__ import annotations

import threading
from pathlib import Path

from cachetools import LRUCache, cached

from envfactory.envs.runtime.environment import Environment

ENV_CACHE_SIZE = 64


def _cache_key(name: str | Path) -> str:
    return str(name)  # a name and the same name as a Path are one environment


@cached(LRUCache(ENV_CACHE_SIZE), key=_cache_key, condition=threading.Condition())
def load_env(name: str | Path) -> Environment:
    """The loaded environment of a catalog name or package path (EnvironmentPackageError when it does
    not load). Resolved on first use exactly as ``Environment.load`` resolves it (a folder, then the
    bundled catalog, then ``ENVFACTORY_CATALOG_PATH``); later calls return that same object. Packages
    this process may not run come back sandboxed (``Environment.open``)."""
    return Environment.open(name)
