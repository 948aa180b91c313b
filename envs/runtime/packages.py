"""Where environment packages are found: the bundled catalog, extra catalogs named by
``ENVFACTORY_CATALOG_PATH``, or a folder path."""
from __future__ import annotations

import os
from pathlib import Path

from envfactory.envs.runtime.errors import EnvironmentPackageError

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog"
CATALOG_PATH_VAR = "ENVFACTORY_CATALOG_PATH"


def extra_catalog_dirs() -> list[Path]:
    """Catalogs besides the bundled one (e.g. where ``envfactory synth`` lands environments), from
    ``ENVFACTORY_CATALOG_PATH`` (folders separated like PATH); their packages resolve by name."""
    return [Path(p) for p in os.environ.get(CATALOG_PATH_VAR, "").split(os.pathsep) if p.strip()]


def resolve_package(ref: str | Path) -> Path:
    path = Path(ref)
    if path.is_dir():
        return path.resolve()
    for catalog in [CATALOG_DIR, *extra_catalog_dirs()]:
        candidate = catalog / str(ref)
        if (candidate / "env.json").is_file():
            return candidate.resolve() if catalog != CATALOG_DIR else candidate
    known = ", ".join(catalog_names()) or "none"
    extra = f"; also searched {CATALOG_PATH_VAR}: {os.pathsep.join(map(str, extra_catalog_dirs()))}" if extra_catalog_dirs() else ""
    raise EnvironmentPackageError(str(ref), f"is neither a folder nor a bundled environment (bundled: {known}){extra}")


def catalog_names() -> list[str]:
    if not CATALOG_DIR.is_dir():
        return []
    return sorted(p.name for p in CATALOG_DIR.iterdir() if (p / "env.json").is_file())


def as_catalog_names(refs: list[str]) -> list[str]:
    """Names for environment references that may be package folders (``envs_imported/parks``): each
    folder's parent joins ``ENVFACTORY_CATALOG_PATH`` so later steps (and worker processes) resolve
    it by name, as records pin environments by name. A folder must be named like its environment."""
    import json
    names = []
    for ref in refs:
        path = Path(ref)
        if not (path / "env.json").is_file():
            names.append(str(ref))
            continue
        try:
            name = json.loads((path / "env.json").read_text(encoding="utf-8")).get("name")
        except (OSError, ValueError, AttributeError):
            name = None
        if name != path.resolve().name:
            raise EnvironmentPackageError(str(ref), f"the folder must be named like its environment ({name!r}) to be "
                                                    "resolved by name; rename it or put it in a catalog folder")
        parent = str(path.resolve().parent)
        known = os.environ.get(CATALOG_PATH_VAR, "")
        if parent not in known.split(os.pathsep):
            os.environ[CATALOG_PATH_VAR] = os.pathsep.join(filter(None, [known, parent]))
        names.append(name)
    return names
