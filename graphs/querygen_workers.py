"""Worker processes for QueryGen's chain slots (``QueryGenContext.workers``).

One Python process runs one thread of Python at a time, and a slot's own work (sampling, tool
calls over MCP, scoring) is CPU: past a few concurrent chains, one process is busy, not waiting on
the model. Worker processes run slots side by side on every core. Each worker runs one slot at a
time, so the number of workers is also the number of chains in flight.

Workers fork from a forkserver that imported the pipeline once (a fresh process, never a fork of
a parent with threads running), and live for the process's lifetime (pool reused across runs
with the same size). Everything a slot needs travels by pickle: the slot and the run's context
(injected chat models are copied, so a model's state such as a call counter stays in the worker).
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

PRELOAD = ["envfactory.graphs.querygen", "envfactory.envs.mcp_bridge", "envfactory.agents.rollout_agent",
           "envfactory.data.reward", "langchain_core.language_models"]

_lock = threading.Lock()
_pools: dict[tuple[int, int], ProcessPoolExecutor] = {}
_cpu = {"seconds": 0.0, "slots": 0}


def _pool(workers: int) -> ProcessPoolExecutor:
    key = (os.getpid(), workers)
    with _lock:
        if key not in _pools:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _pools[key] = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        return _pools[key]


def _timed(fn: Callable[..., dict[str, Any]], *args: Any) -> tuple[dict[str, Any], float]:
    start = time.process_time()  # the worker runs one slot at a time: its process CPU is this slot's
    out = fn(*args)
    return out, time.process_time() - start


def run_in_worker(workers: int, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in the pool of ``workers`` processes; blocks the calling thread until done."""
    try:
        pickle.dumps(args)
    except Exception as exc:  # say what cannot travel, instead of a pool error later
        raise ValueError(f"QueryGen workers need a picklable context and chat models: {type(exc).__name__}: {exc}; "
                         "set workers=0 to run in this process") from exc
    out, cpu = _pool(workers).submit(_timed, fn, *args).result()
    with _lock:
        _cpu["seconds"] += cpu
        _cpu["slots"] += 1
    return out


def worker_cpu_seconds() -> float:
    """CPU the workers of this process spent on slots so far (benchmarks add it to their own)."""
    with _lock:
        return _cpu["seconds"]


def shutdown_workers() -> None:
    with _lock:
        pools = [p for (pid, _), p in _pools.items() if pid == os.getpid()]
        _pools.clear()
    for p in pools:
        p.shutdown(wait=True, cancel_futures=True)
