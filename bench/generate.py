"""Memory and CPU per task of ``envfactory generate`` (offline) as the number of tasks grows: each size
runs in a fresh process (its own peak RSS and CPU, read with ``os.wait4``), and the figures are
ratios of the large run to the small one (flat in n: peak RSS ratio near 1, CPU per task ratio near 1).

    python -m envfactory.bench.generate --small 2000 --large 20000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_generate(n: int, env: str = "library", seed: int = 0, workdir: Path | None = None) -> dict[str, Any]:
    """One ``envfactory generate ENV --n N`` in a new process: its peak RSS, CPU and wall time."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        store = Path(tmp) / "records.sqlite"
        cmd = [sys.executable, "-m", "envfactory.cli.main", "generate", env, "--n", str(n), "--seed", str(seed),
               "--store", str(store), "--json"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    summary = json.loads(out)
    tasks = summary["chains"] + summary["skipped_as_done"]
    cpu = usage.ru_utime + usage.ru_stime
    return {"n": n, "tasks": tasks, "accepted": summary["accepted"], "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(cpu, 2), "cpu_ms_per_task": round(cpu * 1000 / max(tasks, 1), 3), "wall_s": round(wall, 1)}


def bench_generate(small: int = 2000, large: int = 20000, env: str = "library") -> dict[str, Any]:
    if not 0 < small < large:
        raise ValueError(f"need 0 < small < large, got small={small}, large={large}")
    a, b = run_generate(small, env), run_generate(large, env)
    return {"small": a, "large": b, "peak_rss_ratio": round(b["peak_rss_mb"] / a["peak_rss_mb"], 3),
            "cpu_per_task_ratio": round(b["cpu_ms_per_task"] / a["cpu_ms_per_task"], 3),
            "targets": {"peak RSS within 1.2x": b["peak_rss_mb"] <= 1.2 * a["peak_rss_mb"],
                        "CPU per task within 1.1x": b["cpu_ms_per_task"] <= 1.1 * a["cpu_ms_per_task"]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=2000)
    p.add_argument("--large", type=int, default=20000)
    p.add_argument("--env", default="library")
    args = p.parse_args(argv)
    try:
        print(json.dumps(bench_generate(args.small, args.large, args.env), indent=2))
    except ValueError as exc:
        print(f"envfactory.bench.generate: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
