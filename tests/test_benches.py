"""The benchmark scripts run and refuse settings that would make their figures meaningless (no
timings are asserted: figures are for the benchmark runs themselves)."""
from __future__ import annotations

import pytest

from envfactory.bench.generate import bench_generate
from envfactory.bench.mcp_baselines import interleaved_ratio
from envfactory.bench.querygen import bench_querygen
from envfactory.envs import Environment


def test_querygen_bench_reports_the_median_of_an_odd_number_of_runs():
    out = bench_querygen(tasks=3, concurrency=2, latency=0.001, models=("gold_replay",), workers=("threads",), repeats=3)
    case = out["gold_replay@2"]
    assert case["runs"] == 3 and case["tasks"] == 3 and case["efficiency_min"] <= case["efficiency"] <= case["efficiency_max"]
    with pytest.raises(ValueError, match="odd number"):
        bench_querygen(tasks=3, repeats=2)
    with pytest.raises(ValueError, match="tasks must be between 1 and 4096"):
        bench_querygen(tasks=5000)


def test_mcp_bench_interleaves_both_servers():
    env = Environment.load("library")
    ep = env.episode()
    fn = env.tools["get_book"].fn

    def bare(book_id: int) -> dict:
        return fn(ep.ctx, book_id=book_id)

    out = interleaved_ratio(env, "get_book", {"book_id": 7}, bare, rounds=3, calls_per_round=2)
    assert out["rounds"] == 3 and out["ratio_min"] <= out["median_ratio"] <= out["ratio_max"]
    assert out["thread_hop_median_ratio"] > 0


def test_generate_bench_needs_a_small_and_a_larger_run():
    with pytest.raises(ValueError, match="0 < small < large"):
        bench_generate(small=100, large=100)
