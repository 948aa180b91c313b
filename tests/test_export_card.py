"""Every export folder has a dataset card (README.md): counts, tiers, models, environments and the
reward, per exported file; ``--tier`` and ``--model`` choose the records."""
from __future__ import annotations

import json

import pytest

from envfactory.cli.main import main
from envfactory.graphs.querygen import QueryGenContext, make_graph


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("card") / "records.sqlite"
    make_graph().invoke({"envs": ["library"], "n": 3}, context=QueryGenContext(rollouts=1, store_path=str(path)))
    return path


def test_the_card_describes_every_file_in_the_folder(store, tmp_path, capsys):
    out = tmp_path / "exp"
    for fmt in ("openai", "sharegpt"):
        assert main(["export", "--format", fmt, "--store", str(store), "--out", str(out), "--json"]) == 0
    card = (out / "README.md").read_text()
    assert "## `envfactory.openai.jsonl` (openai)" in card and "## `envfactory.sharegpt.jsonl` (sharegpt)" in card
    assert "R = clip(tau*T + (1-tau)*S - L - F, 0, 1)" in card
    assert "rollout=offline:rule-solver: 3" in card and "library (3 records" in card and "rows: 3 from 3 records" in card
    assert main(["export", "--format", "verl", "--store", str(store), "--out", str(tmp_path / "v"), "--json"]) == 0
    verl_card = (tmp_path / "v" / "README.md").read_text()
    assert verl_card.index("python3 -m verl.trainer.main_ppo") < verl_card.index("# envfactory dataset card")
    assert "(verl)" in verl_card and "library (3 records, bundled)" in verl_card


def test_tier_and_model_choose_the_records(store, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["export", "--format", "openai", "--store", str(store), "--out", str(out), "--tier", "offline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 3
    assert '"tier": ["offline"]' in (out / "README.md").read_text()
    assert main(["export", "--format", "openai", "--store", str(store), "--out", str(out), "--tier", "model", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["rows"] == 0          # every record here is offline (scripted)
    assert main(["export", "--format", "verl", "--store", str(store), "--out", str(tmp_path / "v"), "--model", "gpt-x"]) == 1
    assert "no accepted records matching --model ['gpt-x']" in capsys.readouterr().err
    assert main(["export", "--format", "openai", "--store", str(store), "--out", str(out),
                 "--tier", "offline:rule-solver", "--json"]) == 0
