"""One workspace from synthesis to export: what one command makes, the next one finds, with no
environment variables."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from envfactory.cli.main import main
from envfactory.envs.runtime.workspace import MARKER, WORKSPACE_VAR, Workspace, WorkspaceError, current_workspace


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder as a new user has it: no workspace variable, commands run from inside it."""
    monkeypatch.delenv(WORKSPACE_VAR, raising=False)
    monkeypatch.delenv("ENVFACTORY_CATALOG_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_found_from_below_by_its_marker_else_out(project):
    assert current_workspace().root == project / "out"   # nothing yet: ./out, not created by reading
    assert not (project / "out").exists()
    ws = Workspace.at(project / "data").ensure()
    assert (project / "data" / MARKER).is_file()
    deep = project / "data" / "a" / "b"
    deep.mkdir(parents=True)
    assert Workspace.find(deep) == ws                    # the nearest marker upward
    assert ws.catalog_dir == ws.root / "catalog" and ws.store_path == ws.root / "records.sqlite"
    assert ws.exports_dir == ws.root / "exports" and ws.envgen_dir == ws.root / "envgen"


def test_the_marker_may_rename_parts_and_a_bad_one_is_a_clear_error(project, capsys):
    (project / MARKER).write_text('[workspace]\nstore = "db/trajectories.sqlite"\n')
    assert current_workspace().store_path == project / "db" / "trajectories.sqlite"
    (project / MARKER).write_text('[workspace]\nstroe = "x.sqlite"\n')
    with pytest.raises(WorkspaceError, match="unknown: stroe"):
        current_workspace().store_path
    (project / MARKER).write_text("[workspace\n")
    assert main(["generate", "library", "--n", "1"]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


def test_workspace_option_before_or_after_the_command(project, capsys):
    (project / "file").write_text("x")
    for argv in (["--workspace", "file", "envs", "list"], ["envs", "list", "--workspace", "file"]):
        assert main(argv) == 2
        assert "is a file, not a folder" in capsys.readouterr().err
    assert WORKSPACE_VAR not in __import__("os").environ   # the option does not outlive the command


def test_generate_then_export_meet_in_the_workspace(project, capsys):
    assert main(["generate", "library", "--n", "2", "--rollouts", "1", "--json"]) == 0
    ws = Workspace.at(project / "out")
    assert ws.exists() and ws.store_path.is_file()       # the first write made ./out a workspace
    capsys.readouterr()
    assert main(["export", "--format", "openai", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 2 and summary["file"].startswith(str(ws.exports_dir))
    # the same from another folder with --workspace after the command
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    import os
    os.chdir(elsewhere)
    assert main(["export", "--format", "sharegpt", "--workspace", str(ws.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 2


def test_a_missing_or_foreign_store_is_an_error_not_an_empty_dataset(project, capsys):
    assert main(["export", "--format", "openai"]) == 2
    err = capsys.readouterr().err
    assert "no record store at" in err and "envfactory generate" in err
    assert not (project / "out").exists()                # nothing created by a reader
    assert main(["export", "--format", "verl", "--store", "nope.sqlite"]) == 2
    assert not (project / "nope.sqlite").exists()
    (project / "notes.txt").write_text("not a database\n" * 50)
    assert main(["export", "--format", "openai", "--store", "notes.txt"]) == 2
    assert "is not a record store" in capsys.readouterr().err
    assert main(["generate", "library", "--n", "1", "--store", "notes.txt"]) == 2
    assert "is not a record store" in capsys.readouterr().err
    other = sqlite3.connect(project / "other.sqlite")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    assert main(["export", "--format", "openai", "--store", "other.sqlite"]) == 2
    assert "has no records table" in capsys.readouterr().err


def test_synthesized_environments_reach_every_command_by_name(project, capsys):
    """synth -> envs list -> envs call -> generate -> export, one workspace, no variables."""
    assert main(["synth", "Team Calendar", "--name", "calendar_events", "--offline", "--json"]) == 0
    ws = current_workspace()
    assert (ws.catalog_dir / "calendar_events" / "verified.json").is_file()
    capsys.readouterr()
    assert main(["envs", "list", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["calendar_events"]["origin"] == "workspace" and listed["library"]["origin"] == "bundled"
    tool = next(t for t in json.loads((ws.catalog_dir / "calendar_events" / "env.json").read_text())["tools"]
                if t["read_only"] and not t["input_schema"].get("required"))
    assert main(["envs", "call", "calendar_events", tool["name"]]) == 0
    for ref in ("calendar_events", str(ws.catalog_dir / "calendar_events")):   # by name or by folder
        assert main(["generate", ref, "--n", "2", "--rollouts", "1", "--json"]) == 0, ref
    capsys.readouterr()
    assert main(["export", "--format", "openai", "--env", "calendar_events", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] >= 2
    # the exports carry the environment: a trainer elsewhere loads it from the folder alone
    assert main(["export", "--format", "verl", "--env", "calendar_events", "--val-fraction", "0", "--json"]) == 0
    verl = json.loads(capsys.readouterr().out)
    assert verl["environments"] == {"calendar_events": "export"} and verl["rows"]["train"] > 0
    assert main(["generate", "library", "--n", "1", "--rollouts", "1", "--json"]) == 0
    assert main(["export", "--format", "trl", "--out", "trl", "--json"]) == 0
    trl_dir = project / "trl"
    pins = json.loads((trl_dir / "packages.json").read_text())
    assert pins["calendar_events"]["origin"] == "export" and pins["library"]["origin"] == "bundled"
    moved = project.parent / f"{project.name}-elsewhere"     # another machine: copies, no workspace, no variables
    shutil.copytree(ws.exports_dir / "verl", moved / "verl")
    shutil.copytree(trl_dir, moved / "trl")
    shutil.rmtree(ws.root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVFACTORY_")}
    env["ENVFACTORY_CONFIG_DIR"] = str(moved / "config")   # the other machine's user, who trusts the copy once
    trust = subprocess.run([sys.executable, "-m", "envfactory.cli.main", "envs", "trust",
                            str(moved / "verl" / "envs" / "calendar_events")], cwd=moved, env=env,
                           capture_output=True, text=True, timeout=120)
    assert trust.returncode == 0, trust.stderr   # one grant by digest: the trl copy is the same content
    proc = subprocess.run([sys.executable, "-c", FRESH_TRAINER, str(moved)], cwd=moved, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["before"].startswith("EnvironmentPackageError")   # not found without the export folder
    assert result["gold"]["scored"] == 1 and result["gold"]["score"] == 1.0, result
    assert result["wrong"]["scored"] == 1 and result["wrong"]["score"] < 1.0, result
    assert "calendar_events" in result["trl_classes"]
    # verl's agent loop finds the export from the trainer's config (the tool config sits in the folder)
    from envfactory.data.exports.verl_loop import register_export_of
    from envfactory.envs.runtime.packages import resolve_package
    tool_config = moved / "verl" / "envfactory.tools.yaml"
    register_export_of({"actor_rollout_ref": {"rollout": {"multi_turn": {"tool_config_path": str(tool_config)}}}})
    assert resolve_package("calendar_events") == (moved / "verl" / "envs" / "calendar_events").resolve()
    assert "export_dir: " in tool_config.read_text()   # verl's stock tool loop: EpisodeTool registers this folder
    # an edited copy is refused, not trained on
    (moved / "trl" / "envs" / "calendar_events" / "seed.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-c", "import sys; from envfactory.data.exports.bundle import register_export;"
                           " register_export(sys.argv[1])", str(moved / "trl")], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "changed after the export" in proc.stderr


# a trainer's process: the verl reward function loaded by path (as verl does), one row scored for its
# gold calls and for a wrong call; the TRL environment classes built after registering the export
FRESH_TRAINER = r"""
import importlib.util, json, sys
from pathlib import Path
import pyarrow.parquet as pq
from envfactory.envs.runtime.cache import load_env
out = Path(sys.argv[1])
try:
    load_env("calendar_events")
    before = "loaded"
except Exception as exc:
    before = f"{type(exc).__name__}: {exc}"
spec = importlib.util.spec_from_file_location("custom_module", out / "verl" / "reward_fn.py")
reward = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reward)
from envfactory.data.exports.verl_loop import EXTRA_FIELDS_KEY, EpisodeRollout
from envfactory.data.exports.verl_task import VerlTask
row = pq.read_table(out / "verl" / "envfactory.train.parquet").to_pylist()[0]

def score(calls):
    rollout = EpisodeRollout(VerlTask.from_extra_info(row["extra_info"]))
    text = "".join("<tool_call>" + json.dumps({"name": c["name"], "arguments": c["arguments"]}) + "</tool_call>" for c in calls)
    rollout.step(text)
    info = {**row["extra_info"], EXTRA_FIELDS_KEY: rollout.finish()}
    return reward.compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], info)

gold = json.loads(row["reward_model"]["ground_truth"])
wrong = [{"name": gold[0]["name"], "arguments": {}}]
from envfactory.data.exports.bundle import register_export
from envfactory.data.exports.trl_env import environment_factories
register_export(out / "trl")
classes = environment_factories(["calendar_events", "library"])
print(json.dumps({"before": before, "gold": score(gold), "wrong": score(wrong), "trl_classes": sorted(classes)}))
"""


def test_graph_contexts_default_to_the_workspace(project):
    from envfactory.graphs.envgen import EnvGenContext
    from envfactory.graphs.querygen import QueryGenContext
    ws = current_workspace()
    assert QueryGenContext().store_path == str(ws.store_path)
    assert QueryGenContext(store_path=None).store_path is None       # explicitly no store
    ctx = EnvGenContext()
    assert (ctx.catalog_dir, ctx.workspace_dir) == (str(ws.catalog_dir), str(ws.envgen_dir))
