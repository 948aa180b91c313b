"""CPU per model rollout over MCP and per reward scoring, measured serially on one event loop.

``bench_rollout()`` samples library chains with QueryGen's own steps, then for each task runs
``rollout_agent.model_rollout`` with a zero-latency ``GoldReplayModel`` (the gold calls, one per
model turn, through the pooled MCP sessions QueryGen uses) and ``score_episodes``, timing every
phase with process CPU time (worker threads included). Serial on purpose: with one task at a time,
CPU per phase is attributable, and the model costs no wall time at all.

Baselines measured in the same process, so the figures compare across machines as ratios:
``oracle_ms`` is the same gold calls made directly on an episode (no model, no MCP, no LangChain);
the micro figures isolate one piece each (an episode, a tool call over MCP, a direct call, a
model turn, a prompt render).
"""
from __future__ import annotations

import asyncio
import inspect
import statistics
import time
from dataclasses import dataclass
from typing import Any

from envfactory.agents import rollout_agent
from envfactory.data.records import UserTurn
from envfactory.data.reward import GoldReference, RewardConfig, score_episodes
from envfactory.envs.runtime.environment import Environment

from envfactory.graphs import querygen
from envfactory.bench.querygen import GoldReplayModel
from envfactory.graphs.querygen.resources import _gold_reference
from envfactory.graphs.querygen.steps import _user_turns


@dataclass
class Task:
    turns: list[UserTurn]
    gold: GoldReference
    scripts: dict[tuple[str, ...], list[tuple[str, dict]]]


def sample_tasks(env: str, n: int, seed: int) -> list[Task]:
    """Tasks exactly as QueryGen makes them offline (sampler, turn split, template queries)."""
    runtime = querygen.ContextRuntime(querygen.QueryGenContext(rollouts=1))
    envs = {env: querygen.load_env(env)}
    tasks = []
    for chain in querygen.slot_chains([env], n, seed, ctx=runtime.context):
        state: dict[str, Any] = {"chain": chain.model_dump()}
        state.update(querygen.split_turns(state, runtime))
        state.update(querygen.generate_queries(state, runtime))
        scripts = {tuple(state["queries"][:k + 1]): [(chain.calls[i].tool, chain.calls[i].arguments) for i in idx]
                   for k, idx in enumerate(state["turns"])}
        tasks.append(Task(_user_turns(chain, state), _gold_reference(chain, envs), scripts))
    return tasks


def _cpu_ms(start: float) -> float:
    return (time.process_time() - start) * 1000


async def _phases(tasks: list[Task], envs: dict[str, Environment], pools: dict, model) -> dict[str, float]:
    """Mean CPU ms per task of each phase of QueryGen's model roll-out path."""
    totals = {"rollout": 0.0, "score": 0.0, "final_hash": 0.0, "close": 0.0}
    accepted = 0
    for task in tasks:
        t = time.process_time()
        run = await rollout_agent.model_rollout(envs, task.turns, model, querygen.DEFAULT_SYSTEM_PROMPT, sessions=pools)
        totals["rollout"] += _cpu_ms(t)
        t = time.process_time()
        reward = score_episodes(task.gold, run.episodes, n_malformed=run.malformed_calls, cfg=RewardConfig())
        totals["score"] += _cpu_ms(t)
        t = time.process_time()
        for ep in run.episodes.values():
            ep.state_hash()
        totals["final_hash"] += _cpu_ms(t)
        t = time.process_time()
        run.close()
        totals["close"] += _cpu_ms(t)
        accepted += reward.score == 1.0
    out = {k: v / len(tasks) for k, v in totals.items()}
    out["accepted_share"] = accepted / len(tasks)
    return out


def _oracle_ms(tasks: list[Task], envs: dict[str, Environment]) -> float:
    t = time.process_time()
    for task in tasks:
        rollout_agent.oracle_rollout(envs, task.turns).close()
    return _cpu_ms(t) / len(tasks)


async def _micro(env: Environment, pool, model, n: int) -> dict[str, float]:
    """Per-piece CPU ms: one episode, one tool call over MCP and directly, one model turn."""
    from langchain_core.messages import HumanMessage, SystemMessage

    out: dict[str, float] = {}
    t = time.process_time()
    for _ in range(n):
        env.episode().close()
    out["episode_open_close"] = _cpu_ms(t) / n
    ep = env.episode()
    args = {"book_id": 3}
    t = time.process_time()
    for _ in range(n):
        ep.call("get_book", args)
    out["direct_call"] = _cpu_ms(t) / n
    async with pool.tools_for(ep) as tools:
        tool = next(x for x in tools if x.name == "get_book")
        t = time.process_time()
        for i in range(n):
            await tool.ainvoke({"type": "tool_call", "id": f"c{i}", "name": "get_book", "args": args})
        out["mcp_tool_call"] = _cpu_ms(t) / n
        bound = model.bind_tools(tools)
    ep.close()
    query = next(iter(model.scripts))
    messages = [SystemMessage(querygen.DEFAULT_SYSTEM_PROMPT), HumanMessage(query[0])]
    t = time.process_time()
    for _ in range(n):
        await bound.ainvoke(messages)
    out["model_turn"] = _cpu_ms(t) / n
    t = time.process_time()
    for i in range(10):  # QueryGen opens one per rollout in flight (32 at concurrency 32), then reuses them
        held = await pool._open()
        ep = held.registry.pinned = env.episode()
        tool = next(x for x in held.tools if x.name == "get_book")
        await tool.ainvoke({"type": "tool_call", "id": f"s{i}", "name": "get_book", "args": args})
        held.registry.pinned = None
        ep.close()
        await held.close()
    out["new_session_and_first_call"] = _cpu_ms(t) / 10
    from envfactory.prompts.registry import default_registry
    t = time.process_time()
    for _ in range(n):
        default_registry().render("rollout_agent/system", service=env.manifest.description)
    out["prompt_render"] = _cpu_ms(t) / n
    return out


def bench_rollout(n: int = 48, env: str = "library", seed: int = 0, repeat: int = 3) -> dict[str, Any]:
    """CPU ms per task for each phase (median of ``repeat`` passes over ``n`` tasks), the oracle
    baseline, micro figures, and the ratio of the whole MCP path to the oracle."""
    from envfactory.envs.mcp import EpisodeSessionPool

    tasks = sample_tasks(env, n, seed)
    envs = {env: querygen.load_env(env)}
    scripts = {k: v for task in tasks for k, v in task.scripts.items()}
    model = GoldReplayModel(latency=0.0, scripts=scripts)
    calls = sum(len(turn.gold_calls) for task in tasks for turn in task.turns)

    async def run(inline_calls: bool) -> tuple[list[dict[str, float]], dict[str, float]]:
        pools = {env: EpisodeSessionPool(envs[env], **({"inline_calls": True} if inline_calls else {}))}
        try:
            await _phases(tasks[:4], envs, pools, model)  # warm-up: imports, pooled sessions, caches
            passes = [await _phases(tasks, envs, pools, model) for _ in range(repeat)]
            micro = await _micro(envs[env], pools[env], model, 200)
        finally:
            await pools[env].aclose()
        return passes, micro

    _oracle_ms(tasks[:4], envs)
    oracle = statistics.median(_oracle_ms(tasks, envs) for _ in range(repeat))
    model.calls = 0
    passes, micro = asyncio.run(run(False))
    calls_per_task = model.calls / (len(tasks) * repeat + 4)
    inline = "inline_calls" in inspect.signature(EpisodeSessionPool).parameters  # older code: no such option
    inline_passes, inline_micro = asyncio.run(run(True)) if inline else (passes, micro)
    phases = {k: round(statistics.median(p[k] for p in passes), 3) for k in passes[0]}
    total = phases["rollout"] + phases["score"] + phases["final_hash"] + phases["close"]
    inline_rollout = statistics.median(p["rollout"] for p in inline_passes)
    return {"tasks": len(tasks), "tool_calls_per_task": round(calls / len(tasks), 2),
            "model_calls_per_task": round(calls_per_task, 2),
            "cpu_ms": {**phases, "total": round(total, 3)}, "oracle_ms": round(oracle, 3),
            "total_vs_oracle": round(total / oracle, 1),
            "micro_ms": {k: round(v, 4) for k, v in micro.items()},
            "mcp_call_vs_direct": round(micro["mcp_tool_call"] / micro["direct_call"], 1),
            "inline_calls": {"rollout_ms": round(inline_rollout, 3), "mcp_tool_call_ms": round(inline_micro["mcp_tool_call"], 4),
                             "rollout_vs_threaded": round(inline_rollout / phases["rollout"], 2)}}


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(bench_rollout(*(int(a) for a in sys.argv[1:2])), indent=2))
