"""The pipeline on imported environments, from the command line as a new user runs it: import,
validate (no hand-written tests), tool graph, sampling, QueryGen and exports."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from envfactory.cli.main import main
from envfactory.envs import Environment
from envfactory.envs.chains import ChainSampler, build_tool_graph
from envfactory.envs.chains.grounding import Grounder

FIXTURES = Path(__file__).parent / "fixtures" / "pyclass"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    out = root / "envs_imported"
    names = {}
    for rel in ("park_finder.py", "order_desk.py", "mcp_notes.py", "tag_library.py"):
        args = ["envs", "import", str(FIXTURES / rel), "--json"]
        name = {"park_finder.py": "park_finder", "order_desk.py": "order_desk", "mcp_notes.py": "notes",
                "tag_library.py": "tag_library"}[rel]
        assert main(args[:3] + ["--out", str(out / name), "--json"]) == 0
        assert main(["envs", "validate", str(out / name)]) == 0  # passes with the generated tests alone
        names[name] = out / name
    return root, names


def _trust(*folders):
    for folder in folders:  # validation is not trust: the user trusts what they reviewed
        assert main(["envs", "trust", str(folder)]) == 0


def test_grounding_reads_the_json_state(imported):
    _, names = imported
    _trust(names["park_finder"])
    env = Environment.load(names["park_finder"])
    grounder = Grounder(env)
    ep = env.episode()
    spec = env.manifest.tool("findParks").input_schema["properties"]["stateCode"]
    assert grounder.value("findParks", "stateCode", spec, ep, __import__("random").Random(0)) in ("WY", "ME")
    ep.call("reserveSite", {"parkCode": "acad", "guestName": "Ida"})
    assert grounder._column_values("guestName", ep, __import__("random").Random(0)) == ["Ida"]  # the current state


def test_graph_sample_generate_and_export(imported, tmp_path, capsys, monkeypatch):
    root, names = imported
    _trust(*names.values())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVFACTORY_CACHE_DIR", str(tmp_path / "cache"))
    tg = build_tool_graph([Environment.load(names[n]) for n in ("park_finder", "notes")])
    confirmed = {(u, v, d["param"]) for u, v, d in tg.edges(confirmed=True)}
    assert ("park_finder.reserveSite", "park_finder.cancelReservation", "reservationId") in confirmed
    assert ("notes.addNote", "notes.getNote", "noteId") in confirmed
    sampler = ChainSampler(build_tool_graph(Environment.load(names["order_desk"])))
    chain = sampler.sample(3)
    assert [c.tool for c in chain.calls] == ["create_order", "get_order"]
    assert chain.calls[1].arguments["order_id"] == chain.calls[0].output["order_id"]  # a seeded uuid4, fed forward

    assert main(["sample", str(names["tag_library"]), "--n", "2", "--seed", "1", "--out", str(tmp_path / "chains")]) == 0
    capsys.readouterr()
    folders = [str(names[n]) for n in ("park_finder", "order_desk", "notes", "tag_library")]
    assert main(["generate", *folders, "--n", "6", "--store", str(tmp_path / "rec.sqlite"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["accepted"] >= 4, summary
    for fmt in ("openai", "verl"):
        assert main(["export", "--format", fmt, "--store", str(tmp_path / "rec.sqlite"), "--out", str(tmp_path / fmt)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "openai" / "envfactory.openai.jsonl").read_text().splitlines()]
    tools = {t["function"]["name"] for r in rows for t in r["tools"]}
    assert {"reserveSite", "create_order"} <= tools or {"addNote", "getNote"} & tools


def test_a_folder_not_named_like_its_environment_is_refused(imported, tmp_path, capsys):
    import shutil
    _, names = imported
    shutil.copytree(names["notes"], tmp_path / "my_notes")
    assert main(["generate", str(tmp_path / "my_notes"), "--n", "1", "--store", str(tmp_path / "r.sqlite")]) == 2
    assert "must be named like its environment ('notes')" in capsys.readouterr().err
