"""Confirmed tool-graph edges kept on disk, so a process confirms an environment's edges once.

Confirming edges executes planned chains on episodes: 0.3-1.7 s per bundled environment, paid by
every process that samples chains (each CLI run, notebook kernel and QueryGen worker). The result
depends only on the environments' packages, the proposed edges and the code that plans and runs the
chains, so it is stored under a key made of exactly those: the package digests, the edge list, the
confirmation settings and a fingerprint of ``toolgraph.py``, ``sampling.py`` and ``grounding.py``.
Any change gives a new key (a new confirmation); a file that is missing, unreadable or does not
match the graph is ignored and rewritten.

``ENVFACTORY_CACHE_DIR`` sets the folder (default ``$XDG_CACHE_HOME/envfactory``, else
``~/.cache/envfactory``); ``off`` turns the cache off.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from envfactory.envs.runtime.trust import package_digest

log = logging.getLogger(__name__)
CACHE_DIR_VAR = "ENVFACTORY_CACHE_DIR"
_DECIDING_CODE = ("toolgraph.py", "confirm.py", "sampling.py", "grounding.py")


def cache_dir() -> Path | None:
    configured = os.environ.get(CACHE_DIR_VAR)
    if configured is not None:
        return None if configured.strip().lower() in ("", "off") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "envfactory"


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    h = hashlib.sha256()
    for name in _DECIDING_CODE:
        h.update(name.encode() + b"\0" + (Path(__file__).parent / name).read_bytes())
    return h.hexdigest()


def _package_fingerprint(env: Any) -> str | None:
    package_dir = getattr(env, "package_dir", None)
    return package_digest(Path(package_dir)) if package_dir is not None else None


def _edge_key(u: str, v: str, d: dict[str, Any]) -> str:
    return json.dumps([u, v, d["param"], d["field"], d["source"]])


def cache_key(envs: list[Any], edges: list[tuple[str, str, dict]], settings: dict[str, Any]) -> str | None:
    """The key of this confirmation, or None when an environment has no package folder to digest."""
    packages = [(e.name, _package_fingerprint(e)) for e in envs]
    if any(digest is None for _, digest in packages):
        return None
    payload = {"code": _code_fingerprint(), "settings": settings, "packages": sorted(packages),
               "edges": sorted(_edge_key(u, v, d) for u, v, d in edges)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load(key: str | None, edges: list[tuple[str, str, dict]]) -> bool:
    """Mark ``edges`` confirmed (with their evidence) as stored under ``key``; False when nothing usable is."""
    folder = cache_dir()
    if folder is None or key is None:
        return False
    try:
        stored = json.loads((folder / "toolgraph" / f"{key}.json").read_text(encoding="utf-8"))
        found = [stored[_edge_key(u, v, d)] for u, v, d in edges]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # missing, unreadable, or not this graph's edges: confirm again
    for (_, _, d), entry in zip(edges, found):
        d["confirmed"], d["evidence"] = bool(entry["confirmed"]), entry["evidence"]
    return True


def save(key: str | None, edges: list[tuple[str, str, dict]]) -> None:
    folder = cache_dir()
    if folder is None or key is None:
        return
    entries = {_edge_key(u, v, d): {"confirmed": d["confirmed"], "evidence": d["evidence"]} for u, v, d in edges}
    try:
        text = json.dumps(entries)
    except TypeError:  # evidence that is not plain JSON would not come back the same: keep it in memory only
        return
    target = folder / "toolgraph" / f"{key}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=target.parent, suffix=".tmp", delete=False, encoding="utf-8") as fh:
            fh.write(text)
        os.replace(fh.name, target)  # whole or not at all: a concurrent reader never sees half a file
    except OSError as exc:  # a read-only home, a full disk: the graph is still right, only not kept
        log.warning("tool-graph cache not written (%s): %s", target, exc)
