"""``envfactory bench``: benchmark scripts that report ratios against same-process baselines."""
from __future__ import annotations

import json

from envfactory.cli.arguments import positive_int


def cmd_bench(args) -> int:
    results = {}
    wanted = args.which
    if wanted in ("envs", "all"):
        from envfactory.bench import envs as bench
        results["reset_snapshot"] = bench.bench_reset_snapshot(rows=args.rows)
        results["concurrent_episodes"] = bench.bench_concurrent_episodes(n=args.episodes)
        try:
            from envfactory.bench.mcp import bench_mcp
            results["call_paths"] = bench_mcp()
        except ImportError as exc:
            results["call_paths"] = {"skipped": str(exc)}
    if wanted in ("querygen", "all"):
        from envfactory.bench.querygen import bench_querygen
        try:
            results["querygen"] = bench_querygen(tasks=args.tasks, concurrency=tuple(args.concurrency), repeats=args.repeats)
        except ValueError as exc:
            import sys
            print(f"envfactory: {exc}", file=sys.stderr)
            return 2
    if wanted == "ray":  # not part of "all": it starts a local Ray instance (the ray extra)
        from envfactory.bench.on_ray import bench_episode_servers, bench_querygen_executors
        results["ray_querygen"] = bench_querygen_executors(tasks=args.tasks, concurrency=tuple(args.concurrency))
        results["episode_servers"] = bench_episode_servers(n=args.episodes)
    if wanted in ("sandbox", "all"):
        from envfactory.bench.sandbox import bench_sandbox
        results["sandbox"] = bench_sandbox()
    if wanted in ("imports", "all"):
        from envfactory.bench.imports import bench_imports
        results["imports"] = bench_imports(accounts=args.accounts)
    if wanted in ("reward", "all"):
        from envfactory.bench.reward import bench_reward
        results["reward"] = bench_reward()
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        for name, figures in results.items():
            print(f"== {name}")
            for k, v in figures.items():
                if isinstance(v, dict):  # one row per case (e.g. querygen's model kind @ concurrency)
                    print(f"  {k}: " + ", ".join(f"{kk}={vv:.3g}" if isinstance(vv, float) else f"{kk}={vv}"
                                                 for kk, vv in v.items()))
                else:
                    print(f"  {k:<40} {v:.4g}" if isinstance(v, float) else f"  {k:<40} {v}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("bench", help="run benchmarks (ratios against same-process baselines)")
    p.add_argument("which", choices=["envs", "imports", "reward", "querygen", "ray", "sandbox", "all"], nargs="?", default="envs",
                   help="which benchmark")
    p.add_argument("--rows", type=positive_int, default=10_000, help="rows in the reset/snapshot benchmark")
    p.add_argument("--episodes", type=positive_int, default=512, help="concurrent episodes")
    p.add_argument("--tasks", type=positive_int, default=1024, help="QueryGen tasks per run (enough that a run at no CPU cost reaches 98%% of ideal at 32)")
    p.add_argument("--concurrency", type=positive_int, nargs="+", default=[8, 32], help="QueryGen concurrency levels")
    p.add_argument("--repeats", type=positive_int, default=3, help="QueryGen runs per case, an odd number (the median run is reported, with the spread)")
    p.add_argument("--accounts", type=positive_int, default=7800, help="accounts in the imported-class benchmark (7800: ~1.4 MB)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_bench)
