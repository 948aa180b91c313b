"""Importing stateful tool classes: the same contract as SQLite packages (isolated episodes,
transactional calls, snapshot/restore, hash, diff, MCP serving, sandboxed validation)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from envfactory.envs import Environment, load_manifest
from envfactory.envs.importer import import_class_file
from envfactory.envs.mcp_bridge import EpisodeControl, in_memory_session
from envfactory.envs.validate import validate_package

FIXTURES = Path(__file__).parent / "fixtures" / "pyclass"


@pytest.fixture(scope="module")
def parking(tmp_path_factory):
    out, info = import_class_file(FIXTURES / "parking_permits.py", tmp_path_factory.mktemp("imp") / "parking")
    return out, info


def test_import_writes_a_valid_package(parking):
    out, info = parking
    manifest = load_manifest(out)
    assert manifest.backend == "pyclass" and manifest.class_name == "ParkingPermitAPI" and info["name"] == "parking_permit"
    tools = {t.name: t for t in manifest.tools}
    assert set(tools) == {"list_permits", "get_permit", "issue_permit", "revoke_permit", "zone_plates"}
    assert tools["issue_permit"].input_schema["properties"]["plate"]["description"] == "The car's licence plate."
    assert tools["issue_permit"].input_schema["required"] == ["plate", "zone"]
    assert tools["get_permit"].read_only and not tools["revoke_permit"].read_only
    assert info["missing_descriptions"] == ["zone_plates.zone"]
    assert tools["list_permits"].output_schema["type"] == "array"


def test_episodes_are_isolated_and_failed_calls_change_nothing(parking):
    env = Environment.load(parking[0], trust=True)
    a, b = env.episode(), env.episode()
    issued = a.call("issue_permit", {"plate": "ZZ-9", "zone": "north"})
    assert issued.ok and issued.output["permit_id"] == "P-3"
    assert b.call("get_permit", {"permit_id": "P-3"}).error == "'permit P-3 does not exist'"
    before = a.state_hash()
    full = a.call("issue_permit", {"plate": "YY-1", "zone": "south"})
    assert full.error_kind == "domain" and "zone south is full" in full.error
    assert a.state_hash() == before
    bad = a.call("issue_permit", {"plate": 7, "zone": "north"})
    assert bad.error_kind == "invalid_arguments" and "argument 'plate'" in bad.error


def test_snapshot_restore_reset_and_diff(parking):
    env = Environment.load(parking[0], trust=True)
    ep = env.episode()
    ep.call("revoke_permit", {"permit_id": "P-1"})
    snap, h = ep.snapshot(), ep.state_hash()
    ep.call("issue_permit", {"plate": "AB-1", "zone": "north"})
    changes = {(c.table, c.key, c.kind) for c in ep.diff().changes}
    assert ("permits", "P-1", "update") in changes and ("permits", "P-3", "insert") in changes
    assert ("_scalars", "next_permit", "update") in changes
    assert not any(t == "zones" for t, _, _ in changes)  # revoked one, issued one: north is back where it was
    ep.restore(snap)
    assert ep.state_hash() == h
    ep.reset()
    assert ep.state_hash() == env.initial_hash and ep.diff().is_empty


def test_outputs_are_json_arrays_not_joined_text(parking):
    env = Environment.load(parking[0], trust=True)
    res = env.episode().call("zone_plates", {"zone": "north"})
    assert res.ok and json.loads(res.text) == ["KX-101"]
    assert isinstance(json.loads(env.episode().call("list_permits", {}).text), list)


def test_hash_is_stable_across_processes(parking):
    env = Environment.load(parking[0], trust=True)
    code = (f"from envfactory.envs import Environment; "
            f"print(Environment.load({str(parking[0])!r}, trust=True).initial_hash)")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == env.initial_hash


def test_served_over_mcp(parking):
    env = Environment.load(parking[0], trust=True)

    async def go():
        async with in_memory_session(env) as s:
            ok = await s.call_tool("issue_permit", {"plate": "CD-4", "zone": "north"})
            err = await s.call_tool("revoke_permit", {"permit_id": "P-404"})
            return ok, err, await EpisodeControl(s).diff_summary()
    ok, err, summary = asyncio.run(go())
    assert ok.structuredContent["permit_id"] == "P-3" and err.isError and "P-404" in err.content[0].text
    assert summary["permits"]["insert"] == 1


def test_bfcl_style_class_with_public_attributes(tmp_path):
    out, info = import_class_file(FIXTURES / "greenhouse.py", tmp_path / "gh")
    env = Environment.load(out, trust=True)
    ep = env.episode()
    assert ep.call("raise_alert", {"sensor_id": "s1", "message": "too hot"}).output == [{"sensor_id": "s1", "message": "too hot"}]
    assert [c.kind for c in ep.diff().changes] == ["insert"]
    assert ep.call("raise_alert", {"sensor_id": "nope", "message": "x"}).error_kind == "domain"
    assert info["read_only"] == ["get_reading"]


def test_imported_package_with_real_tests_validates_in_the_sandbox(parking, tmp_path):
    import shutil
    pkg = tmp_path / "parking"
    shutil.copytree(parking[0], pkg)
    step = lambda call, args, ok=True, **kw: {"call": call, "args": args, "expect": {"ok": ok, **kw}}
    cases = [
        {"name": "permits", "steps": [step("list_permits", {"zone": "north"}, output=[{"permit_id": "P-1"}]),
                                      step("list_permits", {"zone": 3}, ok=False, error_kind="invalid_arguments")]},
        {"name": "get", "steps": [step("get_permit", {"permit_id": "P-2"}, output={"plate": "LM-202"}),
                                  step("get_permit", {"permit_id": "P-9"}, ok=False, error_contains="does not exist")]},
        {"name": "issue and revoke", "steps": [
            step("issue_permit", {"plate": "EF-1", "zone": "north"}, output={"permit_id": "P-3"}),
            step("issue_permit", {"plate": "EF-2", "zone": "south"}, ok=False, error_contains="full"),
            step("revoke_permit", {"permit_id": "P-3"}, output={"status": "revoked"}),
            step("revoke_permit", {"permit_id": "P-3"}, ok=False, error_contains="already revoked")]},
        {"name": "plates", "steps": [step("zone_plates", {"zone": "south"}, output=["LM-202"]),
                                     step("zone_plates", {}, ok=False, error_kind="invalid_arguments")]},
    ]
    (pkg / "tests.json").write_text(json.dumps({"cases": cases}))
    report = validate_package(pkg)
    assert report.verdict == "PASS", report.verdict_line
    assert report.paths_covered == report.paths_total == 10
    assert Environment.load(pkg).name == "parking_permit"  # verified.json makes it loadable without trust


def test_hostile_class_file_is_imported_in_the_sandbox(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\nclass Evil:\n    def get_x(self) -> int:\n        return 1\n")
    with pytest.raises(RuntimeError, match="blocked"):
        import_class_file(evil, tmp_path / "out")
    assert not marker.exists()
