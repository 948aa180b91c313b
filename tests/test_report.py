"""``envfactory report``: a static site of a workspace, opened in a real browser (Debian's chromium,
driven by Playwright without downloading a browser): the overview, an environment page, a trajectory
page and the filterable trajectory list render with their key elements and no console errors."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from envfactory.cli.main import main
from envfactory.data.records import TrajectoryRecord
from envfactory.data.report import views
from envfactory.data.store import RecordStore
from envfactory.agents.testing import ScriptedChatModel
from envfactory.graphs.querygen import QueryGenContext, make_graph

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("ENVFACTORY_REPORT_SHOTS", "")) if os.environ.get("ENVFACTORY_REPORT_SHOTS") else None


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace as `envfactory run` leaves it: one synthesized environment with its EnvGen run,
    accepted trajectories, and rejected ones (a rollout model that never calls a tool)."""
    from envfactory.cli.synth_cmd import synthesize_batch
    from envfactory.graphs.envgen import EnvGenContext
    ws = tmp_path_factory.mktemp("workspace")
    ctx = EnvGenContext(catalog_dir=str(ws / "catalog"), workspace_dir=str(ws / "envgen"))
    results = synthesize_batch([{"target": "Team Calendar", "name": "calendar_events"}], ctx,
                               ws / "envgen" / "checkpoints.sqlite", 1, False)
    assert results[0]["status"] == "accepted", results
    store = str(ws / "records.sqlite")
    graph = make_graph()
    graph.invoke({"envs": ["library"], "n": 4}, context=QueryGenContext(rollouts=1, store_path=store))
    graph.invoke({"envs": ["commerce"], "n": 2}, context=QueryGenContext(
        rollouts=1, store_path=store, chat_models={"rollout": ScriptedChatModel(script=["I cannot do that."] * 20)}))
    mp = pytest.MonkeyPatch()
    mp.setenv("ENVFACTORY_CATALOG_PATH", str(ws / "catalog"))  # synthesized packages resolve by name
    graph.invoke({"envs": ["calendar_events"], "n": 2}, context=QueryGenContext(rollouts=1, store_path=store))
    yield ws
    mp.undo()


@pytest.fixture(scope="module")
def site(workspace, tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    assert main(["report", "--workspace", str(workspace), "--out", str(out), "--json"]) == 0
    return out


def test_the_site_has_a_page_per_environment_and_per_trajectory(workspace, site):
    records = list(RecordStore(workspace / "records.sqlite").query())
    statuses = {r.status for r in records}
    assert statuses == {"accepted", "rejected"}
    assert sorted(p.stem for p in (site / "t").glob("*.html")) == sorted(r.key for r in records)
    assert {"library", "commerce", "calendar_events"} <= {p.stem for p in (site / "envs").glob("*.html")}
    index = (site / "data" / "index.js").read_text()
    rows = json.loads(index[index.index("=") + 1:].rstrip().rstrip(";"))
    assert {r["key"] for r in rows} == {r.key for r in records}
    assert all(r["reason"] for r in rows if r["status"] == "rejected")
    envgen = (site / "envgen.html").read_text()
    assert "Team Calendar" in envgen and "attempt 1" in envgen
    # nothing is fetched from the network at view time: no absolute http(s) asset references
    for page in [site / "index.html", site / "trajectories.html", *list((site / "envs").glob("*.html"))[:3]]:
        html = page.read_text()
        assert 'src="http' not in html and 'href="http' not in html.replace('<a href="http', "")


def test_bad_arguments_get_a_clear_error(tmp_path, capsys):
    assert main(["report", "--workspace", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exc:   # refused by the argument parser, in one line
        main(["report", "--workspace", str(tmp_path), "--out", str(tmp_path / "file")])
    assert exc.value.code == 2 and "is a file" in capsys.readouterr().err


def test_an_empty_workspace_still_renders(tmp_path):
    from envfactory.data.report import build_report
    out = build_report(tmp_path, tmp_path / "site", progress=False, run_tests=False)
    assert out["trajectories"] == 0 and out["environments"] >= 8
    assert "No record store" in (tmp_path / "site" / "index.html").read_text()


def test_a_turn_shows_only_the_changes_it_made():
    record = TrajectoryRecord.model_validate({
        "key": "k", "envs": [{"name": "library", "version": "1", "initial_state_hash": "h"}], "tools": [],
        "turns": [{"query": "borrow it", "gold_calls": []}, {"query": "renew it", "gold_calls": []}],
        "messages": [{"role": "user", "content": "borrow it"}, {"role": "user", "content": "renew it"}],
        "verification": {"accepted": True, "state_diffs": [
            {"library": {"changes": [{"table": "loans", "key": 7, "kind": "insert", "after": {"due": "d1"}}]}},
            {"library": {"changes": [{"table": "loans", "key": 7, "kind": "insert", "after": {"due": "d1"}},
                                     {"table": "loans", "key": 7, "kind": "update", "before": {"due": "d1"},
                                      "after": {"due": "d2"}, "columns": ["due"]}]}}]},
        "provenance": {}})
    first, second = views.turn_views(record)
    assert [c["kind"] for c in first["changes"]["library"]] == ["insert"]
    assert [c["kind"] for c in second["changes"]["library"]] == ["update"]


@pytest.mark.slow
def test_the_pages_render_in_a_real_browser(workspace, site, tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("ENVFACTORY_REQUIRE_BROWSER"):
            pytest.fail(f"chromium is not installed at {CHROMIUM} (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt install chromium); CI installs it")
    from playwright.sync_api import sync_playwright
    shots = SHOTS or tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    records = list(RecordStore(workspace / "records.sqlite").query())
    accepted = next(r for r in records if r.status == "accepted" and "library" in [e.name for e in r.envs])
    rejected = next(r for r in records if r.status == "rejected")
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

        page.goto((site / "index.html").as_uri())
        assert page.locator("#summary .card").count() == 5
        assert page.locator("#environments tr").count() >= 1 + 9  # header + bundled + synthesized
        assert page.locator("#plot-outcomes svg, #plot-pass-rate svg").count() == 2
        assert page.locator("#reasons tr").count() >= 2
        page.screenshot(path=str(shots / "overview.png"), full_page=True)

        page.goto((site / "envs" / "library.html").as_uri())
        tools = page.locator("#tools tr").count() - 1
        assert tools == 9 and page.locator("#toolgraph svg g.node").count() == tools
        assert page.locator("#toolgraph svg g.edge.confirmed").count() > 0
        assert page.locator("#toolgraph .edge-label").first.text_content()
        assert page.locator("#cases tr").count() > 1 and page.locator("#samples li").count() > 0
        page.hover("#toolgraph g.node[data-node='get_book']")  # highlights its edges, dims the rest
        assert page.locator("#toolgraph g.edge.hot").count() > 0 and page.locator("#toolgraph g.edge.dim").count() > 0
        page.screenshot(path=str(shots / "environment.png"), full_page=True)

        page.goto((site / "envs" / "calendar_events.html").as_uri())
        assert page.locator("#env-name").text_content().startswith("calendar_events")

        page.goto((site / "t" / f"{accepted.key}.html").as_uri())
        assert page.locator("#status").text_content() == "accepted"
        assert page.locator(".turn").count() == len(accepted.turns)
        assert page.locator("#reward td").first.text_content() == f"{accepted.verification.reward['score']:.2f}"
        assert page.locator("#conversation .msg").count() == len(accepted.messages)
        page.screenshot(path=str(shots / "trajectory.png"), full_page=True)

        page.goto((site / "t" / f"{rejected.key}.html").as_uri())
        assert "Rejected" in page.locator("#reason").text_content()

        page.goto((site / "trajectories.html").as_uri())
        assert page.locator("#results tbody tr").count() == len(records)
        page.select_option("select[name=status]", "rejected")
        n_rejected = sum(r.status == "rejected" for r in records)
        assert page.locator("#results tbody tr").count() == n_rejected
        assert page.locator("#count").text_content().startswith(f"{n_rejected} of {len(records)}")
        page.select_option("select[name=status]", "")
        page.fill("input[name=q]", accepted.key)
        assert page.locator("#results tbody tr").count() == 1
        browser.close()
    assert not problems, problems
