"""The quickstart notebook runs end to end offline, and what it reports is checked against the library."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quickstart_notebook_runs_offline(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from envfactory.envs import Environment

    monkeypatch.setenv("ENVFACTORY_QUICKSTART_OUT", str(tmp_path / "out"))  # the kernel inherits it
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    last = nb.cells[-1].outputs
    summary = json.loads("".join(o.get("text", "") for o in last if o.get("name") == "stdout"))
    env = Environment.load("library")
    assert summary["env"] == {"name": "library", "tools": len(env.tool_specs), "initial_hash": env.initial_hash}
    assert summary["episode"] == {"call_ok": True, "error_kind": "domain", "unchanged": True}
    assert summary["chain"]["calls"] >= 2
    assert summary["querygen"]["accepted"] >= 1 and summary["querygen"]["chains"] == 3
    record = summary["record"]
    assert record["score"] == 1.0 and record["trajectory"] == 1.0 and record["state"] == 1.0
    assert record["rollout_tier"].startswith("offline")          # oracle output is labelled, never called model output
    counts = summary["exports"]["counts"]
    assert counts["openai"] == counts["sharegpt"] == summary["querygen"]["accepted"]
    verl_rows = sum(pq.read_metadata(path).num_rows for path in summary["exports"]["verl_files"].values())
    assert verl_rows == sum(counts["verl"].values()) >= record["turns"] >= 1
    assert summary["exports"]["verl_skipped"] == 0
    assert summary["verl_scores"]["gold"] == 1.0 > summary["verl_scores"]["last_call_missing"]
    assert summary["out"] == str(tmp_path / "out") and (tmp_path / "out" / "verl" / "README.md").is_file()
