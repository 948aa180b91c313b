"""`envfactory envs ...` through the console entry point."""
from __future__ import annotations

import json
import subprocess
import sys

from envfactory.cli.main import main


def test_list_json(capsys):
    assert main(["envs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    lib = next(r for r in rows if r["name"] == "library")
    assert (lib["tools"], lib["read"], lib["write"], lib["tables"]) == (9, 4, 5, 4)


def test_call_success_and_error(capsys):
    assert main(["envs", "call", "library", "checkout_book", "--args", '{"member_id": 3, "book_id": 1}', "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["state_changes"]["loans"]["insert"] == 1
    assert main(["envs", "call", "library", "checkout_book", "--args", '{"member_id": 3}']) == 1
    assert "must contain ['book_id']" in capsys.readouterr().out
    assert main(["envs", "call", "library", "get_book", "--args", "{nope"]) == 2


def test_validate_all_exit_code_and_table():
    proc = subprocess.run([sys.executable, "-m", "envfactory.cli.main", "envs", "validate", "--all"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "library" in proc.stdout and "PASS" in proc.stdout


def test_unknown_environment_is_a_clear_error(capsys):
    proc = subprocess.run([sys.executable, "-m", "envfactory.cli.main", "envs", "call", "atlantis", "x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "is neither a folder nor a bundled environment" in proc.stderr
