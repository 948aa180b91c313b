"""Records keep the kept rollout's state after each user turn (``Verification.state_diffs``), on the offline
solver and on the model path alike, so the report shows each turn's changes without replaying anything."""
from __future__ import annotations

from envfactory.bench.querygen import GoldReplayModel, gold_scripts
from envfactory.data.records import TrajectoryRecord
from envfactory.data.report.views import turn_views
from envfactory.envs.runtime.cache import load_env
from envfactory.graphs.querygen import QueryGenContext, make_graph
from envfactory.graphs.querygen.resources import run_records


def _final_changes(record: dict) -> list[dict]:
    """The gold's changes: the gold calls replayed on a fresh episode."""
    env = load_env(record["envs"][0]["name"])
    with env.episode() as ep:
        for turn in record["turns"]:
            for call in turn["gold_calls"]:
                ep.call(call["name"], call["arguments"])
        return ep.diff().model_dump(mode="json")["changes"]


def _check(records: list[dict]) -> None:
    assert records
    for r in records:
        assert r["verification"]["accepted"], r["verification"]
        diffs = r["verification"]["state_diffs"]
        assert diffs is not None and len(diffs) == len(r["turns"])  # one per user turn
        name = r["envs"][0]["name"]
        assert diffs[-1][name]["changes"] == _final_changes(r)  # the last is the whole rollout's change
        views = turn_views(TrajectoryRecord.model_validate(r))
        assert all(v["changes"] is not None for v in views)


def test_offline_records_keep_each_turns_state():
    out = make_graph().invoke({"envs": ["library"], "n": 3, "seed": 1}, context=QueryGenContext(rollouts=1, mode="conv"))
    records = run_records(out)
    _check(records)
    assert any(len(r["turns"]) > 1 for r in records)
    # a turn that writes shows a change the turn before it did not have
    assert any(len(d[r["envs"][0]["name"]]["changes"]) for r in records for d in r["verification"]["state_diffs"])


def test_model_rollouts_keep_each_turns_state():
    ctx = QueryGenContext(rollouts=1)
    model = GoldReplayModel(latency=0.0, scripts=gold_scripts("library", 3, 0, ctx))
    out = make_graph().invoke({"envs": ["library"], "n": 3, "seed": 0},
                              context=QueryGenContext(rollouts=1, chat_models={"rollout": model}))
    records = run_records(out)
    assert all(r["provenance"]["tiers"]["rollout"] == "model" for r in records)
    _check(records)
