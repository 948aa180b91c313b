"""`envfactory graph` and `envfactory sample` end to end, through the console entry point."""
from __future__ import annotations

import json

from envfactory.cli.main import main


def test_graph_command_writes_files(tmp_path, capsys):
    assert main(["graph", "library", "--out", str(tmp_path), "--format", "png", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["tools"] == 9 and out["summary"]["confirmed_edges"] > 0
    for path in out["files"].values():
        assert (tmp_path / path.split("/")[-1]).stat().st_size > 0


def test_sample_command_is_reproducible(tmp_path, capsys):
    assert main(["sample", "library", "--n", "5", "--seed", "3", "--out", str(tmp_path / "a"), "--json"]) == 0
    first = (tmp_path / "a" / "library.chains.jsonl").read_text()
    assert main(["sample", "library", "--n", "5", "--seed", "3", "--out", str(tmp_path / "b"), "--json"]) == 0
    assert first == (tmp_path / "b" / "library.chains.jsonl").read_text()
    rows = [json.loads(line) for line in first.splitlines()]
    assert len(rows) == 5 and all(r["calls"] and r["final_hashes"]["library"] for r in rows)
