"""A package's tools.py is imported like a real module: registered in sys.modules under a name
unique to the package folder and its source, so postponed annotations resolve, and packages or
versions never clash."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from envfactory.envs import Environment

NOTES = Path(__file__).parent / "fixtures" / "notes"

TYPED_TOOLS = '''
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass
class Row:
    note_id: int
    title: str


class Listing(BaseModel):
    first: Entry          # defined below: resolved later through the module's namespace
    count: int


class Entry(BaseModel):
    note_id: int
    title: str


def list_notes(ctx):
    rows = [Row(r["note_id"], r["title"]) for r in ctx.all("SELECT note_id, title FROM notes ORDER BY note_id")]
    Listing.model_rebuild()
    listing = Listing(first=Entry(note_id=rows[0].note_id, title=rows[0].title), count=len(rows))
    return {"notes": [{"note_id": r.note_id, "title": r.title} for r in rows], "marker": MARKER, "count": listing.count}
'''


def _package(tmp_path: Path, folder: str, marker: str) -> Path:
    """The notes package with postponed annotations, typed helpers and a list_notes that uses them."""
    pkg = tmp_path / folder
    shutil.copytree(NOTES, pkg)
    tools = (pkg / "tools.py").read_text()  # the later list_notes replaces the original one
    (pkg / "tools.py").write_text("from __future__ import annotations\n" + tools + TYPED_TOOLS + f"\nMARKER = {marker!r}\n")
    return pkg


def test_postponed_annotations_dataclasses_and_pydantic_models_resolve(tmp_path):
    env = Environment.load(_package(tmp_path, "notes", "one"), trust=True)
    out = env.episode().call("list_notes", {})
    assert out.ok, out.error
    assert out.output["count"] == 4 and out.output["marker"] == "one"
    name = env.tools["list_notes"].fn.__module__
    assert sys.modules[name].MARKER == "one"


def test_packages_and_versions_never_share_a_module(tmp_path):
    a = Environment.load(_package(tmp_path, "a", "from a"), trust=True)
    b = Environment.load(_package(tmp_path, "b", "from b"), trust=True)  # same manifest name, other folder
    name_a, name_b = (e.tools["list_notes"].fn.__module__ for e in (a, b))
    assert name_a != name_b and name_a.startswith("envfactory_env_notes_")
    assert a.episode().call("list_notes", {}).output["marker"] == "from a"
    assert b.episode().call("list_notes", {}).output["marker"] == "from b"

    # reloading unchanged code replaces its own entry instead of adding one
    before = {n for n in sys.modules if n.startswith("envfactory_env_notes_")}
    again = Environment.load(tmp_path / "a", trust=True)
    assert again.tools["list_notes"].fn.__module__ == name_a
    assert {n for n in sys.modules if n.startswith("envfactory_env_notes_")} == before

    # an edited version gets its own name; the environment loaded before keeps its code
    (tmp_path / "a" / "tools.py").write_text((tmp_path / "a" / "tools.py").read_text().replace("'from a'", "'edited'"))
    edited = Environment.load(tmp_path / "a", trust=True)
    assert edited.tools["list_notes"].fn.__module__ not in (name_a, name_b)
    assert edited.episode().call("list_notes", {}).output["marker"] == "edited"
    assert a.episode().call("list_notes", {}).output["marker"] == "from a"


def test_a_module_that_fails_to_import_is_not_left_registered(tmp_path):
    from envfactory.envs.runtime.errors import EnvironmentPackageError
    from envfactory.envs.runtime.manifest import load_manifest
    from envfactory.envs.runtime.environment import tools_module_name

    pkg = _package(tmp_path, "broken", "x")
    (pkg / "tools.py").write_text("raise ImportError('no such lib')\n")
    name = tools_module_name(pkg, load_manifest(pkg))
    with pytest.raises(EnvironmentPackageError, match="tools.py failed to import"):
        Environment.load(pkg, trust=True)
    assert name not in sys.modules
