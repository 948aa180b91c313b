"""A hostile package author's attacks (issue 17), each contained: correct verdict, nothing written
outside the workspace, no process left behind, no connection made, the parent's memory bounded.

Runs as whatever user runs the suite (root in CI); ``test_suite_without_cap_sys_admin`` runs the
containment tests again with CAP_SYS_ADMIN dropped (capsh)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from envfactory.cli.main import main
from envfactory.envs import Environment, UntrustedCodeError
from envfactory.envs.runtime import trust

LIBRARY = Environment.load("library").package_dir


def hostile_copy(tmp_path: Path, *, prelude: str = "", tool_body: str | None = None) -> Path:
    """The bundled library package with hostile code added (at import, or inside get_book)."""
    pkg = tmp_path / f"hostile_{uuid.uuid4().hex[:6]}"
    shutil.copytree(LIBRARY, pkg)
    tools = (pkg / "tools.py").read_text()
    if prelude:
        tools = prelude + "\n" + tools
    if tool_body is not None:
        tools = tools.replace("def get_book(ctx, book_id):\n", f"def get_book(ctx, book_id):\n{tool_body}\n", 1)
    (pkg / "tools.py").write_text(tools)
    return pkg


# ---------------------------------------------------------------- trust is only the user's to grant

def test_a_forged_verified_json_grants_nothing(tmp_path, capsys):
    marker = tmp_path / "outside" / "pwned"
    marker.parent.mkdir()
    pkg = hostile_copy(tmp_path, tool_body=f"    open({str(marker)!r}, 'w').write('x')")
    (pkg / "verified.json").write_text(json.dumps({"digest": trust.package_digest(pkg), "model_written": False}))
    assert not trust.is_trusted(pkg)
    with pytest.raises(UntrustedCodeError):
        Environment.load(pkg)
    main(["envs", "call", str(pkg), "get_book", "--args", '{"book_id": 1}'])
    assert not marker.exists()


def test_a_forged_trust_store_entry_grants_nothing(tmp_path):
    pkg = hostile_copy(tmp_path, prelude="# hostile")
    trust.grant_trust(hostile_copy(tmp_path, prelude="# another package"))  # the store and its key exist
    store = trust.config_dir() / trust.STORE_FILE
    entries = json.loads(store.read_text())["trusted"]
    digest = trust.package_digest(pkg)
    entries.append({"digest": digest, "mac": "0" * 64, "path": str(pkg), "name": "library"})
    store.write_text(json.dumps({"trusted": entries}))
    assert not trust.is_trusted(pkg)
    listed = {e["digest"]: e["valid"] for e in trust.trusted_entries()}
    assert listed[digest] is False and sum(listed.values()) == 1


def test_trust_is_granted_listed_and_revoked_from_the_cli(tmp_path, capsys):
    pkg = hostile_copy(tmp_path, prelude="# reviewed by the user")
    assert main(["envs", "trust", str(pkg)]) == 0
    assert "trusted library" in capsys.readouterr().out
    assert trust.is_trusted(pkg) and Environment.load(pkg).name == "library"
    assert (trust.config_dir() / trust.KEY_FILE).stat().st_mode & 0o077 == 0  # the key is the user's alone
    assert main(["envs", "trust", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["path"] for e in listed] == [str(pkg.resolve())] and listed[0]["valid"]
    (pkg / "tools.py").write_text((pkg / "tools.py").read_text() + "\n# edited after review\n")
    assert not trust.is_trusted(pkg)  # trust is for the content the user saw
    assert main(["envs", "trust", str(pkg), "--revoke"]) == 0
    assert "revoked 1" in capsys.readouterr().out
    assert main(["envs", "trust", "library"]) == 0 and "bundled" in capsys.readouterr().out
    assert main(["envs", "trust"]) == 2


def test_the_digest_never_follows_a_symlink(tmp_path):
    pkg = hostile_copy(tmp_path, prelude="# with a link")
    (pkg / "zero").symlink_to("/dev/zero")
    digest = trust.package_digest(pkg)  # returns (reading /dev/zero would never end)
    (pkg / "zero").unlink()
    (pkg / "zero").symlink_to("/dev/null")
    assert trust.package_digest(pkg) != digest
