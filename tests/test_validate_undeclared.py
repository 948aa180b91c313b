"""The validator warns about public functions (SQLite packages) and public methods (imported
classes) that env.json does not declare as tools."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from envfactory.envs.imports.importer import import_class
from envfactory.envs.validation.validate import child_validate

FIXTURES = Path(__file__).parent / "fixtures"


def _drop_tool(pkg: Path, name: str) -> None:
    manifest = json.loads((pkg / "env.json").read_text())
    manifest["tools"] = [t for t in manifest["tools"] if t["name"] != name]
    (pkg / "env.json").write_text(json.dumps(manifest))


def test_undeclared_public_methods_of_an_imported_class_are_reported(tmp_path):
    pkg = import_class(FIXTURES / "pyclass" / "greenhouse.py", tmp_path / "greenhouse").package
    assert not [w for w in child_validate(pkg)["warnings"] if "not declared" in w]
    _drop_tool(pkg, "clear_alerts")  # the method is still there, no longer a tool
    warnings = [w for w in child_validate(pkg)["warnings"] if "not declared" in w]
    assert warnings == ["public methods of GreenhouseSensors not declared as tools: clear_alerts"]


def test_undeclared_public_functions_of_a_tools_module_are_reported(tmp_path):
    pkg = tmp_path / "notes"
    shutil.copytree(FIXTURES / "notes", pkg)
    (pkg / "tools.py").write_text((pkg / "tools.py").read_text() + "\n\ndef archive_note(ctx, note_id):\n    return {}\n")
    _drop_tool(pkg, "edit_note")
    warnings = [w for w in child_validate(pkg)["warnings"] if "not declared" in w]
    assert warnings == ["public functions not declared as tools: archive_note, edit_note"]
