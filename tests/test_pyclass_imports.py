"""Importing what people have: MCP server files, camelCase names, sibling modules, HTTP-client
imports, scenario models with required fields, scenarios of any size; determinism of imported
code; and validation with no hand-written tests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from envfactory.cli.main import main
from envfactory.envs import Environment, load_manifest
from envfactory.envs.imports.importer import import_class
from envfactory.envs.validation.validate import validate_package

FIXTURES = Path(__file__).parent / "fixtures" / "pyclass"


def _fleet_scenario(vans: int) -> dict:
    return {"depots": {"d1": "North depot", "d2": "South depot"},
            "vans": {f"v{i}": {"van_id": f"v{i}", "depot": "d1" if i % 2 else "d2", "capacity": 3,
                               "loads": [f"parcel-{i}-{j}-" + "x" * 40 for j in range(i % 3)]} for i in range(vans)}}


def test_mcp_server_file_serves_its_wrappers(tmp_path):
    report = import_class(FIXTURES / "mcp_notes.py", tmp_path / "notes")
    manifest = load_manifest(report.package)
    assert report.source == "mcp" and manifest.pyclass.instance_global == "api"
    assert [t.name for t in manifest.tools] == ["addNote", "getNote", "findNotes"]  # served names, camelCase kept
    add = manifest.tool("addNote")
    assert add.input_schema["properties"]["title"]["description"] == "The note's title; must not be empty."
    assert add.input_schema["properties"]["body"]["description"] == "The note's text."  # "(str) [Optional]:" read
    assert [t.name for t in manifest.tools if t.read_only] == ["getNote", "findNotes"]
    ep = Environment.load(report.package, trust=True).episode()
    empty = ep.call("addNote", {"title": ""})
    assert empty.error_kind == "domain" and empty.error == "title must be a non-empty string"  # the wrapper's check
    assert ep.call("addNote", {"title": "todo", "body": "call"}).output["noteId"] == "n2"
    other = Environment.load(report.package, trust=True).episode()
    assert other.call("getNote", {"noteId": "n2"}).error == "note n2 not found"  # each episode has its own instance
    assert validate_package(report.package, write_record=False).verdict == "PASS"


def test_camel_case_class_methods_are_kept(tmp_path, capsys):
    code = main(["envs", "import", str(FIXTURES / "park_finder.py"), "--out", str(tmp_path / "parks"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["tools"] == ["findParks", "reserveSite", "cancelReservation"] and out["skipped_methods"] == {}
    ep = Environment.load(tmp_path / "parks", trust=True).episode()
    assert ep.call("reserveSite", {"parkCode": "acad", "guestName": "Ida"}).output["reservationId"] == 1
    assert ep.call("findParks", {"stateCode": "ME"}).output[0]["sites"] == 0


@pytest.mark.parametrize("rel, root", [("bakery/shop.py", None), ("flat/inventory.py", None),
                                       ("bakery/shop.py", "")])
def test_modules_that_import_their_siblings(tmp_path, rel, root):
    import_root = FIXTURES if root == "" else None
    report = import_class(FIXTURES / rel, tmp_path / "pkg", import_root=import_root)
    manifest = load_manifest(report.package)
    assert manifest.pyclass.import_root == "src" and manifest.tools_module.startswith("src/")
    copied = sorted(p.relative_to(report.package / "src").as_posix() for p in (report.package / "src").rglob("*.py"))
    assert copied == (["bakery/__init__.py", "bakery/models.py", "bakery/pricing.py", "bakery/shop.py"]
                      if rel.startswith("bakery") else ["inventory.py", "stock_rules.py"])  # only what it imports
    verdict = validate_package(report.package, write_record=False)
    assert verdict.verdict == "PASS", verdict.verdict_line
    if rel.startswith("bakery"):
        ep = Environment.load(report.package, trust=True).episode()
        assert ep.call("add_topping", {"name": "plum", "topping": "nuts"}).output == 17


def test_http_client_imports_work_and_connections_are_still_refused(tmp_path):
    report = import_class(FIXTURES / "weather_http.py", tmp_path / "weather")
    assert validate_package(report.package, write_record=False).verdict == "PASS"
    caller = tmp_path / "caller.py"
    caller.write_text(FIXTURES.joinpath("weather_http.py").read_text() + (
        "\n    def fetch_live(self, city: str) -> int:\n        \"\"\"Ask a live service.\"\"\"\n"
        "        return requests.get('http://192.0.2.1/' + city, timeout=1).status_code\n"))
    pkg = import_class(caller, tmp_path / "live", explore=False).package
    (pkg / "tests.json").write_text(json.dumps({"cases": [{"name": "live", "steps": [
        {"call": "fetch_live", "args": {"city": "oslo"}, "expect": {"ok": True}}]}]}))
    verdict = validate_package(pkg, write_record=False)
    assert verdict.verdict == "FAIL" and "Operation not permitted" in verdict.verdict_line  # seccomp: no sockets


def test_uuid_random_and_clock_are_seeded_per_episode(tmp_path):
    report = import_class(FIXTURES / "order_desk.py", tmp_path / "orders")
    env = Environment.load(report.package, trust=True)
    runs = []
    for _ in range(2):
        ep = env.episode()
        outs = [ep.call("create_order", {"item": "tea", "quantity": q}).output for q in (1, 2)]
        runs.append((outs, ep.state_hash()))
    assert runs[0] == runs[1] and runs[0][1] != env.initial_hash
    first, second = runs[0][0]
    assert first["order_id"] != second["order_id"] and first["created"] < second["created"]  # a clock that ticks per call
    assert first["created"].startswith("2026-01-15T09:00:0")  # the manifest's clock
    import uuid
    assert uuid.uuid4() != uuid.uuid4()  # nothing process-wide was patched
    verdict = validate_package(report.package, write_record=False)
    assert verdict.verdict == "PASS" and verdict.deterministic  # the determinism check runs the writes twice


def test_a_scenario_model_with_required_fields(tmp_path, capsys):
    code = main(["envs", "import", str(FIXTURES / "fleet.py"), "--out", str(tmp_path / "empty"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["scenario_fields"] == ["depots", "vans"]
    assert any("FleetScenario requires depots, vans" in w and "--scenario FILE" in w for w in out["warnings"])
    assert json.loads((tmp_path / "empty" / "scenario.schema.json").read_text())["required"] == ["depots", "vans"]
    assert "get_van (success path)" in out["uncovered"]  # nothing to find in an empty fleet: listed, not guessed
    scenario = tmp_path / "fleet.json"
    scenario.write_text(json.dumps(_fleet_scenario(5)))
    report = import_class(FIXTURES / "fleet.py", tmp_path / "fleet", scenario=scenario)
    assert report.uncovered == [] and report.warnings == []
    assert validate_package(report.package, write_record=False).verdict == "PASS"
    scenario.write_text(json.dumps({"depots": {}}))
    with pytest.raises(RuntimeError, match="vans"):
        import_class(FIXTURES / "fleet.py", tmp_path / "bad", scenario=scenario)


def test_a_scenario_of_two_megabytes(tmp_path):
    scenario = tmp_path / "big.json"
    scenario.write_text(json.dumps(_fleet_scenario(16000)))
    assert scenario.stat().st_size > 2_000_000
    report = import_class(FIXTURES / "fleet.py", tmp_path / "fleet", scenario=scenario)
    assert (report.package / "scenario.json").read_bytes() == scenario.read_bytes()  # copied as given, not via argv
    verdict = validate_package(report.package, write_record=False)
    assert verdict.verdict == "PASS", verdict.verdict_line
    ep = Environment.load(report.package, trust=True).episode()
    assert ep.call("load_van", {"van_id": "v15999", "parcel": "p"}).ok
    assert [(c.table, c.key, c.columns) for c in ep.diff().changes] == [("vans", "v15999", ["loads"])]


def test_scenario_keys_must_name_attributes(tmp_path):
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"wallets": {"dee": 4}, "_rng_seed": 1}))
    with pytest.raises(RuntimeError, match=r"attributes Raffle does not have: _rng_seed .*keys must match attribute names"):
        import_class(FIXTURES / "raffle.py", tmp_path / "r", scenario=scenario)
    scenario.write_text(json.dumps({"wallets": {"dee": 4}}))
    report = import_class(FIXTURES / "raffle.py", tmp_path / "r", scenario=scenario)
    ep = Environment.load(report.package, trust=True).episode()
    assert ep.state_json()["wallets"] == {"dee": 4} and ep.call("buy_ticket", {"owner": "dee"}).ok


def test_values_that_depend_on_the_process_are_not_pinned(tmp_path):
    report = import_class(FIXTURES / "token_desk.py", tmp_path / "tokens")
    suite = json.loads((report.package / "tests.json").read_text())
    publish = next(s for c in suite["cases"] for s in c["steps"] if s["call"] == "publish" and s["expect"]["ok"])
    if any("relaxed" in w for w in report.warnings):  # hash() of text differed between the two sandbox processes
        assert publish["expect"]["output"] == {"$any": True} and "expect_state" not in publish
    assert validate_package(report.package, write_record=False).verdict == "PASS"


def test_what_exploration_cannot_reach_is_declared_and_listed(tmp_path):
    report = import_class(FIXTURES / "fleet.py", tmp_path / "empty")  # no scenario: an empty fleet
    suite = json.loads((report.package / "tests.json").read_text())
    assert "FleetScenario requires depots, vans" in suite["uncovered"]["get_van (success path)"]
    verdict = validate_package(report.package, write_record=False)
    assert verdict.verdict == "PASS" and "2 declared unreachable" in verdict.verdict_line
    assert any("get_van (success path)" in w for w in verdict.warnings)
