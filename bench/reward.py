"""Composite-reward evaluations per second on 10-call trajectories over a 1k-row database,
against a baseline that compares whole canonical state dumps (the reference's exact-equality
approach) measured in the same process."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from envfactory.bench.envs import make_calendar_package
from envfactory.envs.runtime.environment import Environment

from envfactory.data.reward import Call, replay_gold, score_episodes


def bench_reward(rows: int = 1000, calls: int = 10, seconds: float = 1.5) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ef-bench-reward-"))
    try:
        env = Environment.load(make_calendar_package(rows, tmp / "cal"), trust=True)
        gold = [Call(name="rename_event", arguments={"event_id": 1 + 37 * i, "title": f"renamed {i}"}) for i in range(calls)]
        ref = replay_gold({env.name: env}, gold)
        ep = env.episode()
        for c in reversed(gold[1:]):            # same writes in another order, one missing: a partial score
            ep.call(c.name, c.arguments)
        ep.call("rename_event", {"event_id": 2, "title": "wrong"})
        episodes = {env.name: ep}
        result = score_episodes(ref, episodes)

        def rate(fn) -> float:
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                fn()
                n += 1
            return n / (time.perf_counter() - start)

        ours = rate(lambda: score_episodes(ref, episodes))
        gold_ep = env.episode()
        for c in gold:
            gold_ep.call(c.name, c.arguments)

        def full_dump_compare():
            a = [tuple(r) for t in sorted(env.tables) for r in ep.conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid')]
            b = [tuple(r) for t in sorted(env.tables) for r in gold_ep.conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid')]
            return a == b

        baseline = rate(full_dump_compare)
        return {"rows": rows, "calls_per_trajectory": calls, "evaluations_per_second": ours,
                "baseline_full_state_compare_per_second": baseline, "speedup_vs_baseline": ours / baseline,
                "example_score": result.score, "example_components": {"T": result.trajectory, "S": result.state},
                "target_2000_per_second": ours >= 2000}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
