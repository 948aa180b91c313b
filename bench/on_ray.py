"""Ray benchmarks (``envfactory bench ray``; ``python -m envfactory.bench.on_ray``): ratios in one run.

- QueryGen with a scripted model of fixed latency (gold replay: one real tool call per model turn)
  at each concurrency, on threads, on the worker-process pool (``workers``) and on Ray actors
  (``executor="ray"``): efficiency = ideal / measured wall, ideal = summed model time / concurrency.
- Ray's fixed start-up cost: joining (starting) a local instance, and starting the actor pool.
- Episode servers: ``n`` concurrent episodes (reset, two tool calls, score, release) through Ray
  actors, against the same work on in-process TRL environment instances.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from envfactory.bench.querygen import GoldReplayModel, gold_scripts
from envfactory.graphs.querygen import QueryGenContext, make_graph


def _actor_cpu() -> float:
    import ray

    from envfactory.graphs.querygen import ray_executor
    with ray_executor._lock:
        pools = list(ray_executor._pools.values())
    return sum(ray.get([a.cpu.remote() for p in pools for a in p.actors()]))


def _querygen_run(graph, scripts, tasks: int, seed: int, concurrency: int, latency: float, how: str) -> dict[str, Any]:
    from envfactory.graphs.querygen.workers import worker_cpu_seconds
    model = GoldReplayModel(latency=latency, scripts=scripts)
    workers = min(concurrency, os.cpu_count() or 1) if how == "processes" else 0
    ctx = QueryGenContext(rollouts=1, chat_models={"rollout": model}, workers=workers,
                          executor="ray" if how == "ray" else "threads")
    outside = (lambda: _actor_cpu()) if how == "ray" else worker_cpu_seconds
    cpu, other, start = time.process_time(), outside(), time.perf_counter()
    out = graph.invoke({"envs": ["library"], "n": tasks, "seed": seed}, context=ctx, config={"max_concurrency": concurrency})
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu + outside() - other
    calls = sum(m["role"] == "assistant" for r in out["records"] for m in r["messages"])
    ideal = calls * latency / concurrency
    return {"tasks": len(out["records"]), "accepted": out["summary"]["accepted"], "measured_s": round(wall, 3),
            "ideal_s": round(ideal, 3), "efficiency": round(ideal / wall, 3),
            "cpu_ms_per_task": round(cpu * 1000 / max(1, len(out["records"])), 1)}


def bench_querygen_executors(tasks: int = 128, concurrency: tuple[int, ...] = (32, 128), latency: float = 0.05,
                             seed: int = 0, kinds: tuple[str, ...] = ("threads", "processes", "ray")) -> dict[str, Any]:
    """Efficiency per executor and concurrency, and each executor against threads at that concurrency."""
    from envfactory.graphs.querygen import ray_executor
    from envfactory.graphs.querygen.workers import shutdown_workers
    graph = make_graph()
    ctx = QueryGenContext(rollouts=1)
    warm_seed = seed + 100_000
    scripts = {**gold_scripts("library", tasks, seed, ctx), **gold_scripts("library", max(concurrency), warm_seed, ctx)}
    results: dict[str, Any] = {"latency_s": latency, "tasks": tasks, "cpus": os.cpu_count()}
    if "ray" in kinds:  # Ray's fixed cost, measured once: a local instance, then the actor pool
        import ray
        fresh = not ray.is_initialized()
        start = time.perf_counter()
        ray_executor.connect(None)
        joined = time.perf_counter()
        ray_executor.pool(QueryGenContext(executor="ray"))
        results["ray_startup"] = {"local_instance_s": round(joined - start, 2) if fresh else "already running",
                                  "actor_pool_s": round(time.perf_counter() - joined, 2)}
    for c in concurrency:
        for how in kinds:
            # warm up: imports, environments, sampler and pooled sessions in every process that runs slots
            _querygen_run(graph, scripts, c, warm_seed, c, 0.25 if how != "threads" else 0.0, how)
            results[f"{how}@{c}"] = _querygen_run(graph, scripts, tasks, seed, c, latency, how)
            if how == "processes":
                shutdown_workers()
        base = results[f"threads@{c}"]["efficiency"]
        for how in kinds:
            results[f"{how}@{c}"]["vs_threads"] = round(results[f"{how}@{c}"]["efficiency"] / base, 2)
    return results


def bench_episode_servers(n: int = 512, servers: int | None = None) -> dict[str, Any]:
    """``n`` concurrent episodes on episode servers vs in-process TRL environment instances."""
    from envfactory.data.exports.episode_server import start_episode_servers, stop_episode_servers
    from envfactory.data.exports.trl_env import environment_factories
    from envfactory.envs.runtime.cache import load_env
    from envfactory.graphs.querygen import ray_executor
    ray_executor.connect(None)
    env = load_env("library")
    gold = [{"name": "checkout_book", "arguments": {"member_id": 1, "book_id": 49}, "env": "library"},
            {"name": "get_book", "arguments": {"book_id": 49}, "env": "library"}]
    row = {"task_id": "t", "prompt": [{"role": "user", "content": "borrow"}], "gold_calls": json.dumps(gold),
           "prefix_calls": "[]", "initial_state_hash": env.initial_hash}

    cls = environment_factories(["library"])["library"]
    start = time.perf_counter()
    instances = [cls() for _ in range(n)]
    for inst in instances:
        inst.reset(**row)
    for inst in instances:
        inst.checkout_book(member_id=1, book_id=49)
        inst.get_book(book_id=49)
    local_scores = [inst._score().score for inst in instances]
    for inst in instances:
        inst._episode.close()
    local = time.perf_counter() - start

    pool = start_episode_servers("bench-episodes", servers=servers or (os.cpu_count() or 1), num_cpus=0)
    try:
        async def remote_run():
            ids = [o["episode"] for o in await asyncio.gather(*(pool.areset({**row, "environment": "library"})
                                                                 for _ in range(n)))]
            peak = sum(s["episodes"] for s in pool.stats())
            await asyncio.gather(*(pool.acall(e, "checkout_book", {"member_id": 1, "book_id": 49}) for e in ids))
            await asyncio.gather(*(pool.acall(e, "get_book", {"book_id": 49}) for e in ids))
            scores = [s["score"] for s in await asyncio.gather(*(pool.ascore(e) for e in ids))]
            await asyncio.gather(*(pool.arelease(e) for e in ids))
            return scores, peak

        asyncio.run(remote_run())  # warm: each server loads the environment once
        start = time.perf_counter()
        remote_scores, peak = asyncio.run(remote_run())
        remote = time.perf_counter() - start
    finally:
        stop_episode_servers(pool)
    return {"episodes": n, "servers": len(pool.actors), "open_at_once": peak,
            "all_scored_1": local_scores == remote_scores == [1.0] * n,
            "in_process_ms_per_episode": round(local * 1000 / n, 3), "servers_ms_per_episode": round(remote * 1000 / n, 3),
            "servers_vs_in_process": round(remote / local, 2), "episodes_per_s_on_servers": round(n / remote)}


def bench_ray(tasks: int = 128, concurrency: tuple[int, ...] = (32, 128), episodes: int = 512) -> dict[str, Any]:
    return {"querygen": bench_querygen_executors(tasks=tasks, concurrency=concurrency),
            "episode_servers": bench_episode_servers(n=episodes)}


if __name__ == "__main__":
    print(json.dumps(bench_ray(), indent=2))
