"""EnvGen batches on Ray (``synth --batch --executor ray``): one Ray task per target, checkpointed in the
run's database as in threads mode, so a rerun redoes nothing; threads and Ray accept the same packages."""
from __future__ import annotations

import json
from pathlib import Path

from envfactory.cli.main import main

TARGETS = ["a public library lending desk API", "parcel shipping labels and tracking"]


def test_synth_batch_runs_one_ray_task_per_target_and_resumes(local_ray, tmp_path, capsys, monkeypatch):
    batch = tmp_path / "targets.txt"
    batch.write_text("\n".join(TARGETS) + "\n")
    monkeypatch.chdir(tmp_path)  # relative paths, as a user types them: the tasks run elsewhere
    argv = ["synth", "--batch", str(batch), "--out", "work", "--catalog", "catalog", "--json", "--executor", "ray"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in first] == ["accepted", "accepted"] and not any(r["resumed"] for r in first)
    assert all((Path(r["package"]).resolve() / "env.json").is_relative_to((tmp_path / "catalog").resolve()) and Path(r["package"], "env.json").is_file() for r in first)
    attempts = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*/attempt-*")}
    assert len(attempts) >= 2
    assert main(argv) == 0  # the second run redoes nothing
    second = json.loads(capsys.readouterr().out)
    assert [r["resumed"] for r in second] == ["done before", "done before"]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*/attempt-*")} == attempts
    # threads mode reads the same checkpoints: the same threads, finished
    assert main(argv[:-2]) == 0
    assert [r["resumed"] for r in json.loads(capsys.readouterr().out)] == ["done before", "done before"]


def test_synth_refuses_a_ray_address_without_the_ray_executor(tmp_path, capsys):
    assert main(["synth", TARGETS[0], "--ray-address", "auto", "--out", str(tmp_path / "w")]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err
