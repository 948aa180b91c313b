"""Where environment packages are found: a folder path, the bundled catalog, the workspace's catalog
(``envs/runtime/workspace.py``: where ``envfactory synth`` and ``run`` land environments), or extra
catalogs named by ``ENVFACTORY_CATALOG_PATH``. Names resolve in that order everywhere."""
from __future__ import annotations

import os
from pathlib import Path

from envfactory.envs.runtime.errors import EnvironmentPackageError
from envfactory.envs.runtime.workspace import WorkspaceError, current_workspace

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog"
CATALOG_PATH_VAR = "ENVFACTORY_CATALOG_PATH"
_registered: list[Path] = []   # catalogs added by this process (an export folder's envs/), searched first


def register_catalog(folder: str | Path) -> Path:
    """Resolve names in ``folder`` too (before the workspace's catalog), for this process: how an
    export folder's own copies of its environments are found by the trainer that loads it."""
    folder = Path(folder).resolve()
    if folder not in _registered:
        _registered.insert(0, folder)
    return folder


def extra_catalog_dirs() -> list[Path]:
    """Catalogs besides the bundled one: registered ones (``register_catalog``), the workspace's, then
    ``ENVFACTORY_CATALOG_PATH``'s (folders separated like PATH); their packages resolve by name."""
    dirs = list(_registered)
    try:
        ws_catalog = current_workspace().catalog_dir
        if ws_catalog.is_dir():
            dirs.append(ws_catalog)
    except WorkspaceError:
        pass  # a broken workspace marker is reported by the commands that write there
    return dirs + [Path(p) for p in os.environ.get(CATALOG_PATH_VAR, "").split(os.pathsep) if p.strip()]


def resolve_package(ref: str | Path) -> Path:
    path = Path(ref)
    if path.is_dir():
        if not (path / "env.json").is_file():
            raise EnvironmentPackageError(str(ref), "is a folder but not an environment package (no env.json)")
        return path.resolve()
    bundled = CATALOG_DIR / str(ref)
    if (bundled / "env.json").is_file():
        return bundled
    extra = extra_catalog_dirs()
    for catalog in extra:
        candidate = catalog / str(ref)
        if (candidate / "env.json").is_file():
            return candidate.resolve()
    known = ", ".join(catalog_names()) or "none"
    searched = f"; also searched {', '.join(map(str, extra))}" if extra else ""
    raise EnvironmentPackageError(str(ref), f"is neither a folder nor a bundled environment (bundled: {known}){searched}")


def catalog_names() -> list[str]:
    """The bundled environments."""
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


def known_packages() -> list[tuple[str, Path, str]]:
    """Every environment a name resolves to: (name, folder, origin) with origin "bundled",
    "workspace" or "catalog path"; a name shadowed by an earlier catalog is left out."""
    found: dict[str, tuple[str, Path, str]] = {n: (n, CATALOG_DIR / n, "bundled") for n in catalog_names()}
    try:
        ws_catalog = current_workspace().catalog_dir
    except WorkspaceError:
        ws_catalog = None
    for catalog in extra_catalog_dirs():
        origin = "workspace" if catalog == ws_catalog else "export" if catalog in _registered else "catalog path"
        if catalog.is_dir():
            for p in sorted(catalog.iterdir()):
                if (p / "env.json").is_file() and p.name not in found and ".staging-" not in p.name:
                    found[p.name] = (p.name, p.resolve(), origin)
    return list(found.values())
