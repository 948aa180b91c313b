"""The exports' one cache of loaded environments (the verl rows, agent loop and reward, the TRL classes).

Loading an environment imports its tool code and builds its initial state: do it once per name and
process. Bounded, so a long-lived trainer process that sees many environments does not keep them all.
"""
from __future__ import annotations

from pathlib import Path

from envfactory.envs.lru import BoundedCache
from envfactory.envs.runtime import Environment

ENV_CACHE_SIZE = 64
_envs = BoundedCache(ENV_CACHE_SIZE)


def load_env(name: str | Path) -> Environment:
    """The loaded environment of a catalog name or package path (EnvironmentPackageError when it does not load)."""
    # hold_lock: two threads asking for the same environment must not import its tool code twice
    return _envs.get_or_make(str(name), lambda: Environment.load(name), hold_lock=True)
