"""Benchmark of chain sampling: CPU per KEPT chain and discard rate, per catalog environment.

QueryGen samples consecutive seeds until it has enough gold chains, so what a task costs is the CPU
of every sample (kept or discarded) divided by the chains kept. The sampler as configured is
compared with a baseline in the same process: the same code with failed calls never redrawn, short
plans never re-planned and no backtracking (``call_retries=0, plan_retries=0, backtracks=0``), which
gives exactly the chains the sampler gave before retries existed. Absolute times on a shared machine
are noise; read the ratios.

    python -m envfactory.bench.sampling [--seeds 200] [--repeat 3] [--envs library,travel]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any, Iterable

from envfactory.envs.runtime.environment import Environment
from envfactory.envs.chains.sampling import ChainSampler, GoldTrajectory, SamplerConfig, chain_statistics
from envfactory.envs.chains.confirm import build_tool_graph

CATALOG = ("commerce", "communication", "devtools", "finance", "health", "library", "productivity", "travel")


def measure(sampler: ChainSampler, seeds: Iterable[int], repeat: int = 1) -> dict[str, Any]:
    """CPU (process time) of sampling ``seeds``, per sample and per kept chain, with chain statistics.

    Sampling is deterministic, so repeats give the same chains; the least CPU of ``repeat`` runs is
    kept (other processes on a shared machine only ever add time)."""
    seeds = list(seeds)
    sampler.sample(seeds[0])  # warm-up: first episode connection, grounding cache
    cpu = float("inf")
    for _ in range(max(repeat, 1)):
        start = time.process_time()
        out = [sampler.sample(s) for s in seeds]
        cpu = min(cpu, time.process_time() - start)
    kept = [o for o in out if isinstance(o, GoldTrajectory)]
    dropped = [o for o in out if not isinstance(o, GoldTrajectory)]
    stats = chain_statistics(sampler.tg, kept, dropped)
    return {"samples": len(seeds), "kept": len(kept), "discard_rate": len(dropped) / len(seeds),
            "ms_per_sample": 1000 * cpu / len(seeds),
            "ms_per_kept": 1000 * cpu / len(kept) if kept else float("inf"),
            "tool_coverage": stats["tool_coverage"], "edge_coverage": stats["edge_coverage"],
            "mean_length": stats["mean_length"], "dependent_bindings": stats["dependent_bindings"],
            "length_distribution": stats["length_distribution"]}


def bench_sampling(envs: Iterable[str] = CATALOG, seeds: int = 200, config: SamplerConfig | None = None,
                   progress: bool = True, repeat: int = 3) -> dict[str, dict[str, dict[str, Any]]]:
    """Per environment, ``{"baseline": ..., "current": ...}`` (see ``measure``); prints a table."""
    from tqdm import tqdm

    config = config or SamplerConfig()
    baseline_config = replace(config, call_retries=0, plan_retries=0, backtracks=0)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in tqdm(list(envs), desc="sampling benchmark", unit="env", disable=not progress):
        tg = build_tool_graph([Environment.load(name)])
        results[name] = {"baseline": measure(ChainSampler(tg, baseline_config), range(seeds), repeat),
                         "current": measure(ChainSampler(tg, config), range(seeds), repeat)}
    print(format_table(results))
    return results


def format_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (f"{'env':14s} {'discard':>15s} {'ms/kept':>15s} {'ratio':>6s} {'tools':>11s} {'edges':>11s} "
            f"{'mean len':>11s} {'dep. bind.':>11s}")
    lines = [head, "-" * len(head)]
    total = {"baseline": [0.0, 0], "current": [0.0, 0]}
    for name, r in results.items():
        b, c = r["baseline"], r["current"]
        for key, m in (("baseline", b), ("current", c)):
            total[key][0] += m["ms_per_sample"] * m["samples"]
            total[key][1] += m["kept"]
        lines.append(f"{name:14s} {b['discard_rate']:6.0%} -> {c['discard_rate']:5.0%} "
                     f"{b['ms_per_kept']:6.2f} -> {c['ms_per_kept']:5.2f} {c['ms_per_kept'] / b['ms_per_kept']:6.2f} "
                     f"{b['tool_coverage']:4.2f} -> {c['tool_coverage']:4.2f} {b['edge_coverage']:4.2f} -> {c['edge_coverage']:4.2f} "
                     f"{b['mean_length']:4.2f} -> {c['mean_length']:4.2f} {b['dependent_bindings']:4d} -> {c['dependent_bindings']:4d}")
    per_kept = {k: v[0] / max(v[1], 1) for k, v in total.items()}
    lines.append(f"{'all':14s} CPU per kept chain {per_kept['baseline']:.2f} ms -> {per_kept['current']:.2f} ms "
                 f"(ratio {per_kept['current'] / per_kept['baseline']:.2f}); kept {total['baseline'][1]} -> {total['current'][1]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="consecutive seeds per environment (from 0)")
    parser.add_argument("--envs", default=",".join(CATALOG), help="comma-separated catalog environments")
    parser.add_argument("--repeat", type=int, default=3, help="runs per sampler; the least CPU counts")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.repeat < 1:
        parser.error("--seeds and --repeat must be at least 1")
    bench_sampling([e for e in args.envs.split(",") if e], seeds=args.seeds, repeat=args.repeat)


if __name__ == "__main__":
    main()
