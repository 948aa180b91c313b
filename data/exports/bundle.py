"""Self-contained exports: an export folder carries the environments its rows need, so a trainer on
another machine loads them from the folder alone (no workspace, no ENVFACTORY_CATALOG_PATH).

``envs/<name>/`` holds a copy of every environment that is not bundled with envfactory (synthesized,
imported), with its validation record; ``packages.json`` pins every environment the rows use, bundled
ones included, by content digest. ``register_export(folder)`` (called by the verl reward shim, the
verl agent loop and tool, and the TRL script) makes those copies resolve by name in the process
and refuses a copy whose content no longer matches its pin.

Trust does not travel with the folder (``envs/runtime/trust.py``: grants live in each user's trust
store): on the training machine, review each copy and ``envfactory envs trust EXPORT/envs/NAME`` once
(the grant is by content digest); ``register_export`` logs which copies still need it.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Iterable

from envfactory.envs.runtime.errors import EnvironmentPackageError
from envfactory.envs.runtime.packages import CATALOG_DIR, register_catalog, resolve_package
from envfactory.envs.runtime.trust import is_trusted, package_digest

log = logging.getLogger(__name__)

PACKAGES_FILE = "packages.json"
ENVS_DIR = "envs"
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")  # all else, so the digest (and a trust grant) match


def bundle_environments(names: Iterable[str], out: str | Path) -> dict[str, Any]:
    """Copy the non-bundled environments among ``names`` into ``out/envs/`` and pin all of them in
    ``out/packages.json`` (merged with what an earlier export into the same folder pinned)."""
    out = Path(out)
    pins_path = out / PACKAGES_FILE
    pins = json.loads(pins_path.read_text()) if pins_path.is_file() else {}
    for name in sorted(set(names)):
        source = resolve_package(name)
        digest = package_digest(source)
        if CATALOG_DIR in source.resolve().parents:
            pins[name] = {"origin": "bundled", "digest": digest}
            continue
        target = out / ENVS_DIR / name
        if target.resolve() != source.resolve():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target, ignore=_COPY_IGNORE)
        pins[name] = {"origin": "export", "path": f"{ENVS_DIR}/{name}", "digest": package_digest(target)}
    out.mkdir(parents=True, exist_ok=True)
    pins_path.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
    return pins


_registered: dict[Path, dict[str, Any]] = {}


def register_export(folder: str | Path) -> dict[str, Any]:
    """Make an export folder's environment copies resolve by name in this process (idempotent: the
    digests are checked once per folder). A copy that was edited after the export, or is missing, is
    an EnvironmentPackageError."""
    folder = Path(folder).resolve()
    if folder in _registered:
        return _registered[folder]
    pins_path = folder / PACKAGES_FILE
    if not pins_path.is_file():
        return {}   # an export of bundled environments only, written before exports carried packages
    pins = json.loads(pins_path.read_text())
    for name, pin in pins.items():
        if pin.get("origin") != "export":
            continue
        copy = folder / pin["path"]
        if not (copy / "env.json").is_file():
            raise EnvironmentPackageError(str(copy), f"the export pins environment {name!r} here, but it is missing")
        if package_digest(copy) != pin["digest"]:
            raise EnvironmentPackageError(str(copy), f"environment {name!r} changed after the export "
                                          f"(digest {package_digest(copy)[:12]}, pinned {pin['digest'][:12]})")
    register_catalog(folder / ENVS_DIR)
    _registered[folder] = pins
    untrusted = [folder / p["path"] for p in pins.values() if p.get("origin") == "export" and not is_trusted(folder / p["path"])]
    if untrusted:
        log.warning("not trusted on this machine yet (review, then `envfactory envs trust PATH` for each): %s",
                    ", ".join(map(str, untrusted)))
    return pins
