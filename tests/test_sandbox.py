"""Sandboxed validation: a good package passes; broken packages fail with a specific reason;
hostile code is stopped and reported, never hanging the caller."""
from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pytest

from envfactory.envs import Environment, UntrustedCodeError
from envfactory.envs.sandbox.runner import SandboxLimits
from envfactory.envs.validation.validate import validate_package

LIBRARY = Environment.load("library").package_dir
FAST = SandboxLimits(wall_seconds=8, cpu_seconds=5, memory_mb=512)


def make_package(tmp_path: Path, *, prelude: str = "", tool_body: str | None = None,
                 mutate=None) -> Path:
    pkg = tmp_path / f"pkg_{uuid.uuid4().hex[:6]}"
    shutil.copytree(LIBRARY, pkg)
    tools = (pkg / "tools.py").read_text()
    if prelude:
        tools = prelude + "\n" + tools
    if tool_body is not None:
        tools = tools.replace('def get_book(ctx, book_id):\n', f'def get_book(ctx, book_id):\n{tool_body}\n', 1)
    (pkg / "tools.py").write_text(tools)
    if mutate:
        mutate(pkg)
    return pkg


def test_bundled_package_passes_with_full_coverage():
    report = validate_package("library")
    assert report.verdict == "PASS", report.verdict_line
    assert report.tests_passed == report.tests_total == 16
    assert report.paths_covered == report.paths_total == 18
    assert report.deterministic is True
    assert report.verdict_line.startswith("PASS library 1.0.0: 16/16 tests, 18/18 tool paths covered, deterministic")
    assert {"landlock", "seccomp", "rlimits", "dies with its parent"} <= set(report.sandbox.isolation)


def test_pass_writes_a_validation_record_that_grants_nothing(tmp_path):
    from envfactory.envs.runtime.trust import grant_trust
    pkg = make_package(tmp_path)
    with pytest.raises(UntrustedCodeError):
        Environment.load(pkg)
    report = validate_package(pkg, limits=FAST)
    assert report.verdict == "PASS" and (pkg / "verified.json").exists()
    with pytest.raises(UntrustedCodeError):
        Environment.load(pkg)
    grant_trust(pkg)
    assert Environment.load(pkg).name == "library"
    (pkg / "tools.py").write_text((pkg / "tools.py").read_text() + "\n# an edit after trusting\n")
    with pytest.raises(UntrustedCodeError):
        Environment.load(pkg)


def _edit_json(pkg, name, fn):
    data = json.loads((pkg / name).read_text())
    fn(data)
    (pkg / name).write_text(json.dumps(data))


@pytest.mark.parametrize("mutate,stage,fragment", [
    (lambda p: (p / "env.json").write_text("{oops"), "sandbox", "env.json is not valid JSON"),
    (lambda p: _edit_json(p, "env.json", lambda m: m["tools"][0].update(name="missing_tool")), "sandbox",
     "defines no function of that name"),
    (lambda p: (p / "schema.sql").write_text("CREATE TABLE"), "sandbox", "schema.sql does not execute"),
    (lambda p: _edit_json(p, "seed.json", lambda s: s["loans"].append(dict(s["loans"][0], loan_id=999, member_id=4242))),
     "sandbox", "foreign-key violations"),
    (lambda p: _edit_json(p, "tests.json", lambda t: t["cases"][0]["steps"][0]["expect"].update(output={"total": -1})),
     "tests", "expected -1"),
])
def test_broken_packages_fail_with_a_specific_reason(tmp_path, mutate, stage, fragment):
    report = validate_package(make_package(tmp_path, mutate=mutate), limits=FAST)
    assert report.verdict == "FAIL"
    assert fragment in report.verdict_line or any(fragment in m for s in report.stages for m in s.messages), report


def test_tool_returning_non_json_fails(tmp_path):
    report = validate_package(make_package(tmp_path, tool_body="    return {'when': object()}"), limits=FAST)
    assert report.verdict == "FAIL" and any("not JSON" in f for f in report.failures)


def test_nondeterministic_tool_fails_the_determinism_check(tmp_path):
    report = validate_package(make_package(tmp_path, mutate=lambda p: _make_write_tool_random(p)), limits=FAST)
    assert report.verdict == "FAIL"
    det = next(s for s in report.stages if s.name == "determinism")
    assert det.status == "fail" and "different" in det.messages[0]


def _make_write_tool_random(pkg):
    tools = (pkg / "tools.py").read_text().replace(
        "    ctx.update(\"holds\", hold_id, {\"status\": \"cancelled\"})",
        "    import random as _r\n    ctx.update(\"holds\", hold_id, {\"status\": \"cancelled\", \"placed_on\": str(_r.random())})")
    (pkg / "tools.py").write_text(tools)


# Refused by the kernel (the code sees an OSError and the import fails), or stopped by a limit.
HOSTILE = {
    "infinite loop at import": dict(prelude="while True:\n    pass", status=("cpu_limit", "timeout")),
    "infinite loop in a tool": dict(tool_body="    while True:\n        pass", status=("cpu_limit", "timeout")),
    "fork bomb": dict(prelude="import os\nwhile True:\n    os.fork()", refused="PermissionError"),
    "memory bomb": dict(prelude="hog = []\nwhile True:\n    hog.append(bytearray(50_000_000))", status=("memory_limit",)),
    "network to loopback": dict(prelude="import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=2)",
                                refused="PermissionError"),
    "network to a public address": dict(prelude="import socket\nsocket.create_connection(('93.184.216.34', 80), timeout=2)",
                                        refused="PermissionError"),
    "subprocess": dict(prelude="import subprocess\nsubprocess.run(['true'])", refused="PermissionError"),
    "crash at import": dict(prelude="import os\nos._exit(3)", status=("crashed",)),
    "unbounded recursion": dict(prelude="def f(n):\n    return f(n + 1)\nf(0)", refused="RecursionError"),
    "segfault": dict(prelude="import ctypes\nctypes.string_at(0)", status=("killed_by_signal",)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_code_is_stopped_and_reported(tmp_path, case):
    spec = HOSTILE[case]
    pkg = make_package(tmp_path, prelude=spec.get("prelude", ""), tool_body=spec.get("tool_body"))
    started = time.monotonic()
    report = validate_package(pkg, limits=FAST)
    assert time.monotonic() - started < FAST.wall_seconds + 10, "the caller was held too long"
    assert report.verdict == "FAIL" and report.verdict_line.startswith("FAIL ")
    if "refused" in spec:  # the import failed on the kernel's refusal
        assert report.stages[0].name == "import" and spec["refused"] in report.stages[0].messages[0], report
    else:
        assert report.sandbox is not None and report.sandbox.status in spec["status"], (report.sandbox, report.verdict_line)


def test_writes_outside_the_workspace_are_refused(tmp_path):
    target = Path("/tmp") / f"ef-escape-{uuid.uuid4().hex}"
    pkg = make_package(tmp_path, prelude=f"open({str(target)!r}, 'w').write('escaped')")
    report = validate_package(pkg, limits=FAST)
    assert report.verdict == "FAIL" and "Permission denied" in report.verdict_line
    assert not target.exists()


def test_swallowed_refusal_changes_nothing(tmp_path):
    prelude = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9))\nexcept BaseException:\n    pass")
    report = validate_package(make_package(tmp_path, prelude=prelude), limits=FAST)
    assert report.verdict == "PASS"  # nothing was reached; the package behaves as its tests say


def test_a_child_error_is_in_the_detail(tmp_path):
    from envfactory.envs.sandbox.runner import run_sandboxed

    # a request without a task makes the child fail with its own message: the detail carries it
    result = run_sandboxed({"package": str(tmp_path)}, tmp_path)
    assert result.status == "crashed" and result.exit_code == 5
    assert result.detail.startswith("exited with code 5: KeyError") and "'task'" in result.detail
