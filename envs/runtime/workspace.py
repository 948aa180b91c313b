"""The workspace: one folder that holds what every step makes and the next one reads.

``catalog/`` (synthesized environments), ``records.sqlite`` (the record store), ``exports/`` and
``envgen/`` (synthesis attempts and checkpoints). A folder is a workspace when it holds an
``envfactory.toml`` marker (a small config file, written on first use). Which workspace a process
uses: ``ENVFACTORY_WORKSPACE`` (the CLI's ``--workspace`` sets it, so worker processes and
subprocesses inherit it), else the nearest folder from the current directory upward holding the
marker, else ``./out``.

The marker may rename the parts, relative to the workspace::

    [workspace]
    catalog = "catalog"
    store = "records.sqlite"
    exports = "exports"
    envgen = "envgen"
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

MARKER = "envfactory.toml"
WORKSPACE_VAR = "ENVFACTORY_WORKSPACE"
DEFAULT_DIR = "out"
_PARTS = {"catalog": "catalog", "store": "records.sqlite", "exports": "exports", "envgen": "envgen"}
_MARKER_TEXT = ("# envfactory workspace: the catalog, record store, exports and synthesis attempts live here.\n"
                "# Commands run from this folder or below it use it; ENVFACTORY_WORKSPACE or --workspace override.\n"
                "[workspace]\n" + "".join(f'{k} = "{v}"\n' for k, v in _PARTS.items()))


class WorkspaceError(ValueError):
    """A workspace that cannot be used (a file where the folder should be, an unreadable marker)."""


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> "Workspace":
        root = Path(path).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"workspace {path} is a file, not a folder")
        return cls(root)

    @classmethod
    def find(cls, start: str | Path | None = None) -> "Workspace":
        """``ENVFACTORY_WORKSPACE``, else the nearest marker from ``start`` (default: the current
        directory) upward, else ``start/out``."""
        named = os.environ.get(WORKSPACE_VAR, "").strip()
        if named:
            return cls.at(named)
        here = Path(start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / MARKER).is_file():
                return cls(folder)
        return cls.at(here / DEFAULT_DIR)

    def _part(self, key: str) -> Path:
        return self.root / self.settings().get(key, _PARTS[key])

    def settings(self) -> dict[str, str]:
        marker = self.root / MARKER
        if not marker.is_file():
            return {}
        try:
            table = tomllib.loads(marker.read_text(encoding="utf-8")).get("workspace", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise WorkspaceError(f"{marker} is not valid TOML: {exc}") from None
        unknown = sorted(set(table) - set(_PARTS))
        if unknown or not all(isinstance(v, str) and v.strip() for v in table.values()):
            raise WorkspaceError(f"{marker}: [workspace] takes only {', '.join(_PARTS)} as non-empty strings"
                                 + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        return table

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def catalog_dir(self) -> Path:
        return self._part("catalog")

    @property
    def store_path(self) -> Path:
        return self._part("store")

    @property
    def exports_dir(self) -> Path:
        return self._part("exports")

    @property
    def envgen_dir(self) -> Path:
        return self._part("envgen")

    def exists(self) -> bool:
        return self.marker.is_file()

    def ensure(self) -> "Workspace":
        """Create the folder and its marker (before the first write into it)."""
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(f"workspace {self.root} is a file, not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.marker.exists():
            self.marker.write_text(_MARKER_TEXT, encoding="utf-8")
        return self


def current_workspace() -> Workspace:
    """The workspace of this process (see the module docstring)."""
    return Workspace.find()
