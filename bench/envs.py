"""Benchmarks of the environment layer. Each prints ratios against a baseline measured in the
same process, because absolute times on shared machines are noise.

- reset+snapshot of a 10k-row environment vs the reference's way: reload the whole state from
  JSON through an MCP tool call (``load_scenario``) and dump it back (``save_scenario``);
- 512 concurrent episodes: errors, cross-episode state bleed, memory per idle episode.
"""
from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import psutil  # noqa: F401  (the measuring child imports it: fail here, before spawning, if missing)

from envfactory.envs.runtime.environment import Environment


def _timeit(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds per call over ``repeat`` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def make_calendar_package(rows: int, dest: Path) -> Path:
    """A synthetic calendar environment with ``rows`` events (the reference measured a 10k-event Calendar)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "schema.sql").write_text(
        "CREATE TABLE calendars (calendar_id INTEGER PRIMARY KEY, owner TEXT NOT NULL);\n"
        "CREATE TABLE events (event_id INTEGER PRIMARY KEY, calendar_id INTEGER NOT NULL REFERENCES calendars(calendar_id),"
        " title TEXT NOT NULL, start TEXT NOT NULL, end TEXT NOT NULL, location TEXT, attendees TEXT NOT NULL);\n")
    r = random.Random(1)
    events = [{"event_id": i + 1, "calendar_id": 1 + i % 20, "title": f"Meeting {i} about {r.choice(['budget', 'design', 'hiring', 'launch'])}",
               "start": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{8 + i % 9:02d}:00:00", "end": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{9 + i % 9:02d}:00:00",
               "location": r.choice(["Room A", "Room B", "Online", None]), "attendees": json.dumps([f"user{r.randint(1, 99)}@example.org" for _ in range(3)])}
              for i in range(rows)]
    (dest / "seed.json").write_text(json.dumps({"calendars": [{"calendar_id": i, "owner": f"user{i}@example.org"} for i in range(1, 21)], "events": events}))
    (dest / "tools.py").write_text(
        "def rename_event(ctx, event_id, title):\n"
        "    ctx.get('events', event_id, 'event')\n"
        "    ctx.update('events', event_id, {'title': title})\n"
        "    return ctx.get('events', event_id, 'event')\n")
    (dest / "env.json").write_text(json.dumps({
        "name": "bench_calendar", "version": "1.0.0", "domain": "benchmark", "description": "Synthetic calendar used by the benchmarks.",
        "tools": [{"name": "rename_event", "description": "Rename one event by id.", "read_only": False,
                   "input_schema": {"type": "object", "properties": {"event_id": {"type": "integer", "description": "event id"},
                                                                     "title": {"type": "string", "description": "new title"}},
                                    "required": ["event_id", "title"], "additionalProperties": False},
                   "output_schema": {"type": "object"}}]}))
    return dest


def bench_reset_snapshot(rows: int = 10_000, repeat: int = 30) -> dict[str, Any]:
    from envfactory.bench.mcp_baselines import reference_style_scenario_server

    tmp = Path(tempfile.mkdtemp(prefix="ef-bench-"))
    try:
        env = Environment.load(make_calendar_package(rows, tmp / "cal"), trust=True)
        ep = env.episode()

        def ours():
            ep.call("rename_event", {"event_id": 7, "title": "moved"})  # so reset has work to undo
            ep.reset()
            ep.snapshot()

        ours_s = _timeit(ours, repeat)
        write_only = _timeit(lambda: ep.call("rename_event", {"event_id": 7, "title": "moved"}), repeat)
        ours_reset_snapshot = max(ours_s - write_only, 1e-9)

        conn = env._scratch(env.initial_state)
        scenario = {"calendars": {str(r[0]): {"calendar_id": r[0], "owner": r[1]} for r in conn.execute("SELECT * FROM calendars")},
                    "events": {str(r[0]): dict(zip(["event_id", "calendar_id", "title", "start", "end", "location", "attendees"], r))
                               for r in conn.execute("SELECT * FROM events")}}
        conn.close()
        baseline_s = reference_style_scenario_server(scenario, repeat)
        return {"rows": rows, "ours_reset_plus_snapshot_ms": ours_reset_snapshot * 1e3,
                "baseline_load_plus_save_via_mcp_ms": baseline_s * 1e3,
                "speedup": baseline_s / ours_reset_snapshot,
                "targets": {"speedup >= 100": baseline_s / ours_reset_snapshot >= 100, "ours <= 1 ms": ours_reset_snapshot <= 1e-3}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_concurrent_episodes(n: int = 512, calls_per_episode: int = 6, workers: int = 32, env_name: str = "library") -> dict[str, Any]:
    """n episodes open at once, driven by a thread pool; each episode's final state must equal a
    serial replay of its own calls (any bleed from another episode would break the equality)."""
    env = Environment.load(env_name)
    idle_kib = _idle_episode_kib(env_name, n)
    episodes = [env.episode(episode_id=f"bench-{i}") for i in range(n)]
    plans = []
    for i in range(n):
        r = random.Random(i)
        plans.append([("checkout_book", {"member_id": r.choice([3, 4, 5, 6, 8]), "book_id": r.randint(1, 60)})
                      if r.random() < 0.6 else ("get_book", {"book_id": r.randint(1, 60)}) for _ in range(calls_per_episode)])

    def drive(i: int):
        ep = episodes[i]
        outcomes = [ep.call(tool, args) for tool, args in plans[i]]
        return [o.error_kind for o in outcomes], ep.state_hash()

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(drive, range(n)))
    elapsed = time.perf_counter() - t
    internal_errors, bleed = 0, 0
    for i, (kinds, h) in enumerate(results):
        internal_errors += sum(k in ("internal", "read_only_violation") for k in kinds)
        with env.episode() as replay:
            expected = [replay.call(tool, args).error_kind for tool, args in plans[i]]
            bleed += (expected != kinds) or (replay.state_hash() != h)
    for ep in episodes:
        ep.close()
    return {"episodes": n, "calls": n * calls_per_episode, "seconds": elapsed,
            "calls_per_second": n * calls_per_episode / elapsed, "infrastructure_errors": internal_errors,
            "episodes_with_state_bleed": bleed, "rss_per_idle_episode_kib": idle_kib}


def _idle_episode_kib(env_name: str, n: int) -> float:
    """Resident memory per idle episode, measured in a fresh process so freed memory from
    earlier work cannot hide the cost."""
    code = (
        "import gc, psutil, sys\n"
        "from envfactory.envs import Environment\n"
        f"env = Environment.load({env_name!r}); [env.episode().close() for _ in range(4)]; gc.collect()\n"
        "p = psutil.Process(); before = p.memory_info().rss\n"
        f"eps = [env.episode() for _ in range({n})]; gc.collect()\n"
        f"print((p.memory_info().rss - before) / {n} / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout.strip())
