"""Importing stateful tool classes: the same contract as SQLite packages (isolated episodes,
transactional calls, snapshot/restore, hash, diff, MCP serving, sandboxed validation)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envfactory.cli.main import main
from envfactory.envs import Environment, UntrustedCodeError, load_manifest
from envfactory.envs.imports.importer import import_class, import_class_file
from envfactory.envs.mcp import EpisodeControl, in_memory_session
from envfactory.envs.validation.testcases import run_suite
from envfactory.envs.validation.validate import validate_package

FIXTURES = Path(__file__).parent / "fixtures" / "pyclass"


@pytest.fixture(scope="module")
def parking(tmp_path_factory):
    return import_class(FIXTURES / "parking_permits.py", tmp_path_factory.mktemp("imp") / "parking", source="class")


@pytest.fixture(scope="module")
def parking_env(parking):
    return Environment.load(parking.package, trust=True)


@pytest.fixture(scope="module")
def greenhouse(tmp_path_factory):
    return import_class(FIXTURES / "greenhouse.py", tmp_path_factory.mktemp("imp") / "greenhouse")


def test_import_writes_a_valid_package(parking):
    manifest = load_manifest(parking.package)
    assert manifest.backend == "pyclass" and manifest.class_name == "ParkingPermitAPI" and parking.name == "parking_permit"
    assert manifest.provenance[0].title == "imported from parking_permits.py"
    assert manifest.provenance[0].url == (FIXTURES / "parking_permits.py").resolve().as_uri()
    tools = {t.name: t for t in manifest.tools}
    assert list(tools) == ["list_permits", "get_permit", "issue_permit", "renew_permit", "revoke_permit",
                           "transfer_permit", "purge_revoked", "zone_plates"]  # source order, hooks left out
    assert tools["issue_permit"].input_schema["properties"]["plate"]["description"] == "The car's licence plate."
    assert tools["renew_permit"].input_schema["properties"]["until"] == {
        "type": "string", "format": "date", "description": "The new last valid day, later than the current one.",
        "examples": ["2030-06-15"]}  # a value an explored call succeeded with
    assert tools["issue_permit"].input_schema["required"] == ["plate", "zone"]
    assert tools["list_permits"].input_schema["required"] == []
    # read or write by what the calls did (zone_plates reads, purge_revoked writes once a permit is revoked)
    assert [n for n, t in tools.items() if t.read_only] == parking.read_only == ["list_permits", "get_permit", "zone_plates"]
    assert parking.missing_descriptions == ["zone_plates.zone"]
    assert tools["zone_plates"].input_schema["properties"]["zone"]["description"] == "zone"
    assert parking.untyped_outputs == [] and parking.undocumented_tools == []  # zone_plates: inferred from its outputs
    assert tools["zone_plates"].output_schema["type"] == "array" and "inferred" in tools["zone_plates"].output_schema["description"]
    assert tools["list_permits"].output_schema["type"] == "array"
    assert tools["purge_revoked"].output_schema == {"type": "integer"}


def test_generated_tests_cover_every_tool_and_pass(parking, parking_env):
    suite = json.loads((parking.package / "tests.json").read_text())
    steps = [(s["call"], s["args"]) for c in suite["cases"] for s in c["steps"]]
    assert ("get_permit", {"permit_id": "P-1"}) in steps  # arguments drawn from the state
    report = run_suite(parking_env)
    assert report.failed == 0 and report.uncovered() == [] and parking.uncovered == []
    writes = [s for c in suite["cases"] for s in c["steps"] if s.get("expect_state")]
    assert writes and all("path" in check for s in writes for check in s["expect_state"])  # JSON-state checks


def test_episodes_are_isolated(parking_env):
    a, b = parking_env.episode(), parking_env.episode()
    issued = a.call("issue_permit", {"plate": "ZZ-9", "zone": "north"})
    assert issued.ok and issued.output["permit_id"] == "P-3"
    assert b.call("get_permit", {"permit_id": "P-3"}).error == "'permit P-3 does not exist'"
    assert b.state_hash() == parking_env.initial_hash != a.state_hash()
    assert b.call("issue_permit", {"plate": "QQ-1", "zone": "north"}).output["permit_id"] == "P-3"  # own counter


def test_a_failed_call_keeps_what_the_class_changed(parking, parking_env, tmp_path):
    ep = parking_env.episode()
    # transfer_permit frees the old zone's place before it finds the new zone full: the class keeps that
    moved = ep.call("transfer_permit", {"permit_id": "P-1", "zone": "south"})
    assert moved.error_kind == "domain" and moved.error == "zone south is full (1 permits)"
    assert [(c.table, c.key, tuple(c.columns)) for c in ep.diff().changes] == [("zones", "north", ("issued",))]
    assert ep.calls[-1].wrote and not ep.calls[-1].ok
    assert ep.call("no_such_tool", {}).error_kind == "unknown_tool"
    missing = ep.call("issue_permit", {"plate": "ZZ-1"})
    assert missing.error_kind == "invalid_arguments" and "missing required argument 'zone'" in missing.error
    extra = ep.call("issue_permit", {"plate": "ZZ-1", "zone": "north", "colour": "red"})
    assert extra.error_kind == "invalid_arguments" and "unexpected argument 'colour'" in extra.error
    # rollback is an option of the package, not the default
    pkg = tmp_path / "rollback"
    shutil.copytree(parking.package, pkg)
    manifest = json.loads((pkg / "env.json").read_text())
    manifest["pyclass"]["rollback_on_error"] = True
    (pkg / "env.json").write_text(json.dumps(manifest))
    ep = Environment.load(pkg, trust=True).episode()
    assert ep.call("transfer_permit", {"permit_id": "P-1", "zone": "south"}).error_kind == "domain"
    assert ep.diff().is_empty


def test_arguments_follow_the_source_with_a_warning(parking_env):
    ep = parking_env.episode()
    looked = ep.call("get_permit", {"permit_id": 1})  # annotated str; the class gets the number and says why not
    assert looked.error_kind == "domain" and "permit 1 does not exist" in looked.error
    assert ep.calls[-1].warnings and "annotation str" in ep.calls[-1].warnings[0]


def test_arguments_are_coerced_to_the_annotated_types(parking_env):
    ep = parking_env.episode()
    renewed = ep.call("renew_permit", {"permit_id": "P-1", "until": "2027-06-30"})
    assert renewed.ok and renewed.output["valid_until"] == "2027-06-30"  # a date inside, ISO text outside
    earlier = ep.call("renew_permit", {"permit_id": "P-1", "until": "2027-01-01"})
    assert earlier.error == "permit P-1 is already valid until 2027-06-30"
    someday = ep.call("renew_permit", {"permit_id": "P-1", "until": "someday"})  # passed as given: the class fails
    assert someday.error_kind == "domain" and "'<=' not supported" in someday.error and ep.calls[-1].warnings


def test_snapshot_restore_reset_and_row_level_diff(parking_env):
    ep = parking_env.episode()
    ep.call("revoke_permit", {"permit_id": "P-1"})
    snap, h = ep.snapshot(), ep.state_hash()
    assert {(c.table, c.key, c.kind, tuple(c.columns)) for c in ep.diff().changes} == {
        ("permits", "P-1", "update", ("status",)), ("zones", "north", "update", ("issued",))}
    ep.call("issue_permit", {"plate": "AB-1", "zone": "north"})
    assert ep.call("purge_revoked", {}).output == 1
    diff = ep.diff()
    assert {(c.table, c.key, c.kind) for c in diff.changes} == {
        ("permits", "P-1", "delete"), ("permits", "P-3", "insert"), ("_scalars", "next_permit", "update")}
    assert diff.keys["permits"] == ["permit_id"]  # inserts compare by content, as for SQLite rows
    assert ("insert", "permits", (("plate", "AB-1"), ("status", "active"), ("valid_until", "2026-12-31"),
                                  ("zone", "north"))) in diff.cells()
    ep.restore(snap)
    assert ep.state_hash() == h and ep.call("get_permit", {"permit_id": "P-1"}).output["status"] == "revoked"
    ep.reset()
    assert ep.state_hash() == parking_env.initial_hash and ep.diff().is_empty and ep.calls == []


def test_outputs_are_json_arrays_not_joined_text(parking_env, greenhouse):
    ep = parking_env.episode()
    assert json.loads(ep.call("zone_plates", {"zone": "north"}).text) == ["KX-101"]  # a set
    assert [p["permit_id"] for p in json.loads(ep.call("list_permits", {}).text)] == ["P-1", "P-2"]
    assert json.loads(ep.call("list_permits", {"zone": "east"}).text) == []  # not ""
    gh = Environment.load(greenhouse.package, trust=True).episode()
    assert json.loads(gh.call("list_sensor_ids", {}).text) == ["s1", "s2"]  # a tuple


def test_hash_is_stable_across_processes(parking, parking_env):
    code = f"from envfactory.envs import Environment; print(Environment.load({str(parking.package)!r}, trust=True).initial_hash)"
    hashes = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert hashes == {parking_env.initial_hash}


def test_served_over_mcp(parking_env):
    async def go():
        async with in_memory_session(parking_env) as s:
            ok = await s.call_tool("issue_permit", {"plate": "CD-4", "zone": "north"})
            err = await s.call_tool("revoke_permit", {"permit_id": "P-404"})
            return ok, err, await EpisodeControl(s).diff_summary()
    ok, err, summary = asyncio.run(go())
    assert ok.structuredContent["permit_id"] == "P-3" and err.isError and "P-404" in err.content[0].text
    assert summary["permits"]["insert"] == 1


def test_bfcl_style_class_with_public_attributes(greenhouse):
    env = Environment.load(greenhouse.package, trust=True)
    state = json.loads(env.initial_state)
    assert state["alert_limit"] == 3 and set(state["sensors"]) == {"s1", "s2"}  # filled by _load_scenario({})
    assert greenhouse.reclassified == ["check_calibration"]  # named like a read, changed the state when run
    assert greenhouse.read_only == ["get_reading", "list_sensor_ids"]
    ep = env.episode()
    assert ep.call("raise_alert", {"sensor_id": "s1", "message": "too hot"}).output == [{"sensor_id": "s1", "message": "too hot"}]
    assert ep.call("raise_alert", {"sensor_id": "nope", "message": "x"}).error == "'sensor nope does not exist'"
    assert [(c.table, c.key, c.kind) for c in ep.diff().changes] == [("alerts", 0, "insert")]
    snap = ep.snapshot()
    ep.call("check_calibration", {"sensor_id": "s2"})
    assert ep.call("clear_alerts", {}).output == 1
    assert [(c.table, c.key, c.kind, tuple(c.columns)) for c in ep.diff(snap).changes] == [
        ("alerts", 0, "delete", ()), ("sensors", "s2", "update", ("calibrated",))]


def test_a_read_tool_that_writes_is_refused_at_runtime(greenhouse, tmp_path):
    pkg = tmp_path / "gh"
    shutil.copytree(greenhouse.package, pkg)
    manifest = json.loads((pkg / "env.json").read_text())
    next(t for t in manifest["tools"] if t["name"] == "check_calibration")["read_only"] = True  # a wrong override
    (pkg / "env.json").write_text(json.dumps(manifest))
    ep = Environment.load(pkg, trust=True).episode()
    res = ep.call("check_calibration", {"sensor_id": "s1"})
    assert res.error_kind == "read_only_violation" and ep.diff().is_empty


def test_scenario_and_cli(tmp_path, capsys):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"sensors": {"g7": {"kind": "light", "value": 800, "calibrated": "2025-12-01"}},
                                    "alert_limit": 1}))
    code = main(["envs", "import", str(FIXTURES / "greenhouse.py"), "--out", str(tmp_path / "pkg"),
                 "--name", "glasshouse", "--scenario", str(scenario), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] and out["name"] == "glasshouse" and out["tests_written"] >= 2 * len(out["tools"]) - 1
    state = json.loads(Environment.load(tmp_path / "pkg", trust=True).initial_state)
    assert list(state["sensors"]) == ["g7"] and state["alert_limit"] == 1 and state["alerts"] == []
    steps = [c["steps"][0] for c in json.loads((tmp_path / "pkg" / "tests.json").read_text())["cases"]]
    assert steps[0]["call"] == "get_reading" and steps[0]["args"] == {"sensor_id": "g7"}  # a key of the sensors table

    code = main(["envs", "import", str(FIXTURES / "greenhouse.py"), "--class", "Nope", "--json"])
    assert code == 1 and "no class 'Nope' in the file (found: GreenhouseSensors)" in json.loads(capsys.readouterr().out)["error"]
    scenario.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        import_class_file(FIXTURES / "greenhouse.py", tmp_path / "x", scenario=scenario)


def test_sets_stay_sets(tmp_path):
    src = tmp_path / "shelf.py"
    src.write_text('class Shelf:\n    def __init__(self):\n        self.tags = {"a", "b"}\n\n'
                   '    def add_tag(self, tag: str) -> list:\n        """Add a tag."""\n        self.tags.add(tag)\n'
                   '        return sorted(self.tags)\n')
    ep = Environment.load(import_class_file(src, tmp_path / "out"), trust=True).episode()
    assert ep.call("add_tag", {"tag": "c"}).output == ["a", "b", "c"]
    assert ep.call("add_tag", {"tag": "a"}).output == ["a", "b", "c"] and ep.instance.tags == {"a", "b", "c"}


def test_imported_package_with_real_tests_validates_in_the_sandbox(parking, tmp_path):
    pkg = tmp_path / "parking"
    shutil.copytree(parking.package, pkg)
    step = lambda call, args, ok=True, **kw: {"call": call, "args": args, "expect": {"ok": ok, **kw}}
    cases = [
        {"name": "permits", "steps": [step("list_permits", {"zone": "north"}, output=[{"permit_id": "P-1"}]),
                                      step("list_permits", {"zone": 3}, output=[]),
                                      step("list_permits", {"area": 3}, ok=False, error_kind="invalid_arguments")]},
        {"name": "get", "steps": [step("get_permit", {"permit_id": "P-2"}, output={"plate": "LM-202"}),
                                  step("get_permit", {"permit_id": "P-9"}, ok=False, error_contains="does not exist")]},
        {"name": "issue, renew, move, revoke, purge", "steps": [
            step("issue_permit", {"plate": "EF-1", "zone": "north"}, output={"permit_id": "P-3"}),
            step("issue_permit", {"plate": "EF-2", "zone": "south"}, ok=False, error_contains="full"),
            step("renew_permit", {"permit_id": "P-3", "until": "2027-03-01"}, output={"valid_until": "2027-03-01"}),
            step("renew_permit", {"permit_id": "P-3", "until": "2026-03-01"}, ok=False, error_contains="already valid"),
            step("transfer_permit", {"permit_id": "P-3", "zone": "south"}, ok=False, error_contains="full"),
            step("revoke_permit", {"permit_id": "P-2"}, output={"status": "revoked"}),
            step("transfer_permit", {"permit_id": "P-3", "zone": "south"}, output={"zone": "south"}),
            step("revoke_permit", {"permit_id": "P-2"}, ok=False, error_contains="already revoked"),
            step("purge_revoked", {}, output=1),
            step("purge_revoked", {"all": True}, ok=False, error_kind="invalid_arguments")]},
        {"name": "plates", "steps": [step("zone_plates", {"zone": "south"}, output=["LM-202"]),
                                     step("zone_plates", {}, ok=False, error_kind="invalid_arguments")]},
    ]
    (pkg / "tests.json").write_text(json.dumps({"cases": cases}))
    report = validate_package(pkg)
    assert report.verdict == "PASS", report.verdict_line
    assert report.paths_covered == report.paths_total == 16
    with pytest.raises(UntrustedCodeError):  # passing validation is not trust
        Environment.load(pkg)


def test_hostile_class_file_is_imported_in_the_sandbox(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\nclass Evil:\n    def get_x(self) -> int:\n        return 1\n")
    with pytest.raises(RuntimeError, match="Permission denied"):  # Landlock: nothing outside the workspace
        import_class_file(evil, tmp_path / "out")
    assert not marker.exists()
