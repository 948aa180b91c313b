"""What QueryGen's slots share in a process: samplers per environment set, record stores per path,
the rollout event loop with its pooled MCP sessions, and the gold references of sampled chains."""
from __future__ import annotations


import asyncio
import json
import os
import threading
from pathlib import Path
from functools import lru_cache
from typing import Any


from envfactory.data.reward import (Call, GoldReference, gold_from_execution, replay_gold)
from envfactory.envs.runtime.cache import load_env
from envfactory.envs.runtime.lru import BoundedCache
from envfactory.envs.runtime.environment import Environment
from envfactory.envs.chains.sampling import ChainSampler, GoldTrajectory, SamplerConfig
from envfactory.envs.chains.confirm import build_tool_graph


from envfactory.graphs.querygen.context import QueryGenContext

@lru_cache(maxsize=16)
def _sampler(names: tuple[str, ...], max_envs: int) -> ChainSampler:
    return ChainSampler(build_tool_graph([load_env(n) for n in names]), SamplerConfig(max_envs=max_envs))

_loop_lock = threading.Lock()

_rollout_loop: dict[str, Any] = {}

def _run_async(coro):
    """Run a coroutine on the process's one rollout event loop and wait for it.

    Graph nodes stay synchronous (SQLite and file work never runs inside the graph's event loop),
    while every chain's model rollouts share one loop in a background thread: waiting on the model
    costs no thread of its own, and the pooled MCP sessions of that loop serve every chain.
    """
    return asyncio.run_coroutine_threadsafe(coro, _loop_state()["loop"]).result()

def _loop_state() -> dict[str, Any]:
    with _loop_lock:
        if _rollout_loop.get("pid") != os.getpid():  # first use, or a forked child (the thread did not follow)
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="querygen-rollouts", daemon=True).start()
            _rollout_loop.update(pid=os.getpid(), loop=loop, pools={})
        return _rollout_loop

def _session_pools(envs: dict[str, Environment], tools: str = "direct") -> dict[str, Any]:
    """Pooled rollout tools per environment on the rollout loop (built on first use): direct tools
    that call the episode in this process (``tools="direct"``), or in-memory MCP sessions (``"mcp"``)."""
    from envfactory.envs.mcp import DirectToolPool, EpisodeSessionPool
    if tools not in ("direct", "mcp"):
        raise ValueError(f"unknown rollout tools {tools!r}; known: direct, mcp")
    pools = _loop_state()["pools"]
    out = {}
    with _loop_lock:
        for name, env in envs.items():
            key = (name, id(env), tools)
            if key not in pools:
                # A worker process's rollout loop is private (no server shares it, no blocking-call guard
                # such as `langgraph dev`'s watches it), so its tool calls run inline on it: a thread hop
                # per call costs more than the sub-millisecond in-memory SQLite work it would move.
                pool = DirectToolPool if tools == "direct" else EpisodeSessionPool
                pools[key] = pool(env, inline_calls=_worker_flag["in_worker"])
            out[name] = pools[key]
    return out

GOLD_CACHE_SIZE = 8192

_gold_refs = BoundedCache(GOLD_CACHE_SIZE)

def _gold_key(chain: GoldTrajectory, calls: list[Call]) -> str:
    return json.dumps([chain.initial_hashes, [c.model_dump() for c in calls]], sort_keys=True, default=str)

def _remember_gold(chain: GoldTrajectory) -> None:
    """Keep the sampler's own execution of a chain as its gold reference (replayed only if missing)."""
    if chain._gold_cells is None:
        return
    calls = _gold_calls(chain)
    gold = gold_from_execution({n: load_env(n) for n in chain.envs}, calls, chain._gold_cells, chain.final_hashes)
    _gold_refs.put(_gold_key(chain, calls), gold)

def _gold_reference(chain: GoldTrajectory, envs: dict[str, Environment]) -> GoldReference:
    """The chain's gold reference, taken out of the cache (its one rollout step is its only reader:
    entries left behind made a run's memory grow with its tasks, up to the cache's size)."""
    calls = _gold_calls(chain)
    gold = _gold_refs.pop(_gold_key(chain, calls))
    return gold if gold is not None else replay_gold(envs, calls)

def _gold_calls(chain: GoldTrajectory) -> list[Call]:
    return [Call(name=c.tool, arguments=c.arguments, masked=c.masked_arguments, env=c.env) for c in chain.calls]

_stores: dict[str, Any] = {}

_stores_lock = threading.Lock()

def _store(ctx: QueryGenContext):
    if not ctx.store_path:
        return None
    from envfactory.data.store import RecordStore
    from envfactory.envs.runtime.workspace import current_workspace
    with _stores_lock:  # slots start together: one store object (and one schema set-up) per path
        if ctx.store_path not in _stores:
            ws = current_workspace()
            if Path(ctx.store_path).resolve() == ws.store_path:
                ws.ensure()  # the workspace's store: its folder becomes a workspace (marker) on first write
            _stores[ctx.store_path] = RecordStore(ctx.store_path)
        return _stores[ctx.store_path]

_worker_flag = {"in_worker": False}

RECENT_RECORDS = 4096  # records a run without a store keeps in memory (the last ones made in this process)

_recent_records = BoundedCache(RECENT_RECORDS)


def _keep_in_memory(records: list[dict[str, Any]]) -> None:
    for record in records:
        _recent_records.put(record["key"], record)


def run_records(output: dict[str, Any], ctx: QueryGenContext | None = None) -> list[dict[str, Any]]:
    """The records a QueryGen run made (its output's ``record_keys``), as dicts, in that order: from
    the run's record store (``ctx.store_path``; without a ctx, the workspace's when it exists), or, for a
    run without one, from the last
    ``RECENT_RECORDS`` this process made. The graph's state holds keys and counts only, so its
    memory stays flat in the number of tasks."""
    keys = output.get("record_keys", [])
    if ctx is None:  # the default context's store: the workspace's, when the run wrote one
        ctx = QueryGenContext()
        if not Path(ctx.store_path).is_file():
            ctx = QueryGenContext(store_path=None)
    store = _store(ctx)
    if store is not None:
        found = {k: r.model_dump() for k in keys if (r := store.get(k)) is not None}
    else:
        found = {k: r for k in keys if (r := _recent_records.get(k)) is not None}
    missing = [k for k in keys if k not in found]
    if missing:
        where = (f"in the record store {ctx.store_path}" if store is not None else
                 f"in memory (a run without a record store keeps the last {RECENT_RECORDS} records of this process; "
                 "give QueryGenContext a store_path to keep them all)")
        raise LookupError(f"{len(missing)} of the run's {len(keys)} records are not {where}; first missing key: {missing[0]}")
    return [found[k] for k in keys]
