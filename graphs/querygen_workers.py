"""Worker processes for QueryGen's chain slots (``QueryGenContext.workers``).

One Python process runs one thread of Python at a time, and a slot's own work (sampling, tool
calls over MCP, scoring) is CPU: past a few concurrent chains, one process is busy, not waiting on
the model. Worker processes run slots side by side on every core. Each worker runs one slot at a
time, so the number of workers is also the number of chains in flight.

Workers fork from a forkserver that imported the pipeline once (a fresh process, never a fork of
a parent with threads running), and live for the process's lifetime (pool reused across runs
with the same size). Everything a slot needs travels by pickle: the slot and the run's context
(injected chat models are copied, so a model's state such as a call counter stays in the worker).
A context object is pickled once: pass a new context (not a mutated one) to change a setting.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from envfactory.envs.lru import BoundedCache

PRELOAD = ["envfactory.graphs.querygen", "envfactory.envs.mcp_bridge", "envfactory.agents.rollout_agent",
           "envfactory.data.reward", "langchain_core.language_models"]

_lock = threading.Lock()
_pools: dict[tuple[int, int], ProcessPoolExecutor] = {}
_cpu = {"seconds": 0.0}


def _pool(workers: int) -> ProcessPoolExecutor:
    key = (os.getpid(), workers)
    with _lock:
        if key not in _pools:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _pools[key] = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        return _pools[key]


_sent = BoundedCache(16)      # id(context) -> (context, pickled, digest): parent side
_received = BoundedCache(1)   # digest -> context: worker side (one run at a time per worker, in practice)


def _pickled(context: Any) -> tuple[bytes, str]:
    """The run's context pickled once per run (it can carry chat models with large state)."""
    hit = _sent.get(id(context))
    if hit is not None and hit[0] is context:  # the entry keeps its context alive: no id reuse
        return hit[1], hit[2]
    try:
        blob = pickle.dumps(context)
    except Exception as exc:  # say what cannot travel, instead of a pool error later
        raise ValueError(f"QueryGen workers need a picklable context and chat models: {type(exc).__name__}: {exc}; "
                         "set workers=0 to run in this process") from exc
    digest = hashlib.sha256(blob).hexdigest()
    _sent.put(id(context), (context, blob, digest))
    return blob, digest


def _timed(fn: Callable[..., dict[str, Any]], state: Any, blob: bytes, digest: str) -> tuple[dict[str, Any], float]:
    start = time.process_time()  # the worker runs one slot at a time: its process CPU is this slot's
    context = _received.get_or_make(digest, lambda: pickle.loads(blob))
    out = fn(state, context)
    return out, time.process_time() - start


def run_in_worker(workers: int, fn: Callable[..., dict[str, Any]], state: Any, context: Any) -> dict[str, Any]:
    """``fn(state, context)`` in the pool of ``workers`` processes; blocks the calling thread until
    done. The context is unpickled once per worker and run, not once per slot."""
    blob, digest = _pickled(context)
    pool = _pool(workers)
    try:
        out, cpu = pool.submit(_timed, fn, state, blob, digest).result()
    except BrokenProcessPool as exc:  # a worker died (killed, out of memory): the next slot gets a new pool
        with _lock:
            for key in [k for k, p in _pools.items() if p is pool]:
                del _pools[key]
        raise RuntimeError(f"a QueryGen worker process died ({exc}); finished tasks are stored, "
                           "run again to resume") from exc
    with _lock:
        _cpu["seconds"] += cpu
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
