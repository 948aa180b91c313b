"""QueryGen graph: sample chains -> split into user turns -> generate queries -> calibrate ->
roll out k times -> verify -> accept or reject, fanned out over chains with ``Send``.

The per-chain work is five steps (``make_chain_graph`` is them as a graph of their own, one node
per step, for Studio) which the outer graph's ``process_chain`` node runs for each sampled chain;
``config["max_concurrency"]`` caps parallel chains. Models, prompt versions, limits and the
record store come through the Context, so Studio, notebooks, the CLI and tests share this graph.
With no model configured every step runs its offline tier and says so in the record's provenance.

A step that waits on a model is a generator: it yields what it waits for (``_Ask``, a structured
model call; ``_Await``, a rollout coroutine) and gets the answer back. ``_drive`` answers in the
calling thread (the graph's nodes, threads mode); ``_adrive`` awaits on an event loop (worker
processes, many slots per loop). One body per step serves both.
"""
from __future__ import annotations

import asyncio
import json
import operator
import os
import threading
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from envfactory.agents import query_agent, refine_agent, rollout_agent
from envfactory.agents.models import model_name
from envfactory.data.records import (EnvRef, GoldCallRef, Provenance, TrajectoryRecord, UserTurn, Verification,
                                     record_key)
from envfactory.data.reward import (Call, GoldReference, GoldReplayError, RewardConfig, gold_from_execution, replay_gold,
                                    score_episodes)
from envfactory.envs.cache import load_env  # the one environment cache; querygen.load_env stays importable
from envfactory.envs.lru import BoundedCache
from envfactory.envs.runtime import Environment
from envfactory.envs.sampling import ChainSampler, GoldTrajectory, SamplerConfig
from envfactory.envs.toolgraph import build_tool_graph

CODE_VERSION = "envfactory-0.1.0"
DEFAULT_SYSTEM_PROMPT = ("You are a helpful assistant with access to tools. Use them to do what the user asks; "
                         "ask for missing details instead of guessing ids.")


@dataclass(kw_only=True)
class QueryGenContext:
    """Run-scoped settings (Studio renders these as a form)."""

    mode: Literal["single", "conv"] = field(default="single", metadata={"description": "single-shot or conversational (user simulator)"})
    rollouts: int = field(default=2, metadata={"description": "k rollouts per task; the pass rate labels difficulty"})
    max_steps: int = field(default=16, metadata={"description": "tool-call steps per rollout"})
    max_tokens: int = field(default=20_000, metadata={"description": "token budget per rollout"})
    pass_threshold: float = field(default=1.0, metadata={"description": "composite reward a rollout needs to pass"})
    tau: float = field(default=0.5, metadata={"description": "reward weight of the trajectory score"})
    prompt_versions: dict[str, str] = field(default_factory=dict, metadata={"description": "prompt id -> version (default latest)"})
    store_path: str | None = field(default=None, metadata={"description": "record store (SQLite); finished tasks are skipped on resume"})
    offline: bool = field(default=False, metadata={"description": "force the offline tier even if models are configured"})
    models: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={"description": "per-role model settings, e.g. {'query': {'model': 'qwen3-8b', 'base_url': 'http://127.0.0.1:8000/v1'}}"})
    persona: str = field(default="a regular customer of the service, polite and brief", metadata={"description": "who the simulated user is"})
    chat_models: dict[str, Any] = field(default_factory=dict, metadata={"description": "injected chat-model objects per role (notebooks, tests)"})
    workers: int = field(default=0, metadata={"description": "worker processes that run chains, each many at once on its event loop (0: threads in this process); one per core uses every core"})


class QueryGenInput(TypedDict, total=False):
    envs: list[str]
    n: int
    seed: int
    max_envs: int
    seeds: list[int]    # instead of n and seed: exactly these chain seeds, one slot each (reproduce given tasks)


class QueryGenState(QueryGenInput, total=False):
    skipped: Annotated[int, operator.add]                 # finished in an earlier run (resumed)
    discarded: Annotated[list[dict[str, Any]], operator.add]
    empty_slots: Annotated[int, operator.add]             # slots whose seeds all gave discarded chains
    not_run: Annotated[int, operator.add]                 # slots skipped because the run was asked to stop
    records: Annotated[list[dict[str, Any]], operator.add]
    summary: dict[str, Any]


class SlotState(TypedDict, total=False):
    """One task slot: which seeds it may sample (``process_chain`` samples its own chain, so
    sampling overlaps the other slots' model calls instead of running serially before them)."""

    slot: int
    envs: list[str]
    seed: int
    max_envs: int
    exact_seed: bool        # the slot samples ``seed`` itself, once (the run's input named its seeds)
    chain: dict[str, Any]   # a chain sampled already (tests, the per-step graph)


class ChainState(TypedDict, total=False):
    chain: dict[str, Any]
    failure: str
    prompts: list[dict[str, Any]]
    models: dict[str, str]
    key: str
    turns: list[list[int]]
    queries: list[str]
    tiers: dict[str, str]
    leaks: list[str]
    rollouts: list[dict[str, Any]]
    record: dict[str, Any]
    records: Annotated[list[dict[str, Any]], operator.add]


@lru_cache(maxsize=16)
def _sampler(names: tuple[str, ...], max_envs: int) -> ChainSampler:
    return ChainSampler(build_tool_graph([load_env(n) for n in names]), SamplerConfig(max_envs=max_envs))


def _ctx(runtime: Runtime | None) -> QueryGenContext:
    return (runtime.context if runtime is not None and runtime.context is not None else None) or QueryGenContext()


def task_key(chain: GoldTrajectory, ctx: QueryGenContext) -> str:
    models = sorted((role, str(cfg.get("model"))) for role, cfg in ctx.models.items())
    injected = sorted((role, model_name(m)) for role, m in ctx.chat_models.items())
    return record_key(chain.chain_id, chain.seed, ctx.mode, ctx.rollouts, sorted(ctx.prompt_versions.items()), models,
                      injected, ctx.offline, CODE_VERSION)


# ---------------------------------------------------------------- outer graph

SEEDS_PER_SLOT = 8


def slot_seeds(slot: int, seed: int, exact: bool = False) -> range:
    """The seeds task slot ``slot`` tries, in order, until one gives a usable chain.

    Blocks of ``SEEDS_PER_SLOT`` per slot: a slot's chain does not depend on how many slots the
    run has, so a run resumed with a larger ``n`` finds its earlier chains again (and skips them)."""
    if exact:
        return range(seed, seed + 1)
    start = seed + slot * SEEDS_PER_SLOT
    return range(start, start + SEEDS_PER_SLOT)


def sample_chains(state: QueryGenState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    """Check the run's environments and build their sampler once; each slot samples its own chain."""
    names = tuple(sorted(state.get("envs") or []))
    if not names:
        raise ValueError("QueryGen needs at least one environment name in 'envs'")
    if state.get("n", 4) < 0:
        raise ValueError(f"QueryGen needs n >= 0 tasks, got {state['n']}")
    if "seeds" in state and not all(isinstance(x, int) and not isinstance(x, bool) for x in state["seeds"]):
        raise ValueError(f"QueryGen 'seeds' must be a list of integers, got {state['seeds']!r}")
    _sampler(names, state.get("max_envs", 1))
    _store(_ctx(runtime))
    return {}


def fan_out(state: QueryGenState) -> list[Send] | str:
    names, max_envs = sorted(state["envs"]), state.get("max_envs", 1)
    if "seeds" in state:
        slots = [{"slot": i, "seed": s, "exact_seed": True} for i, s in enumerate(state["seeds"])]
    else:
        slots = [{"slot": i, "seed": state.get("seed", 0)} for i in range(state.get("n", 4))]
    if not slots:
        return "summarize"
    return [Send("process_chain", {**slot, "envs": names, "max_envs": max_envs}) for slot in slots]


def sample_slot(state: SlotState, ctx: QueryGenContext) -> tuple[GoldTrajectory | None, list[dict[str, Any]], bool]:
    """The slot's chain: (chain or None, discarded attempts, finished in an earlier run)."""
    sampler = _sampler(tuple(state["envs"]), state.get("max_envs", 1))
    store = _store(ctx)
    discarded = []
    for s in slot_seeds(state["slot"], state.get("seed", 0), state.get("exact_seed", False)):
        out = sampler.sample(s)
        if not isinstance(out, GoldTrajectory):
            discarded.append(out.model_dump())
            continue
        if store is not None and store.has(task_key(out, ctx)):
            return out, discarded, True  # finished in an earlier run: resume without redoing or duplicating it
        _remember_gold(out)
        return out, discarded, False
    return None, discarded, False


def slot_chains(envs: list[str], n: int, seed: int = 0, max_envs: int = 1,
                ctx: QueryGenContext | None = None) -> list[GoldTrajectory]:
    """The chains a run of ``n`` slots would process (benchmarks, inspection)."""
    ctx = ctx or QueryGenContext()
    chains = []
    for i in range(n):
        chain, _, done = sample_slot({"slot": i, "envs": sorted(envs), "seed": seed, "max_envs": max_envs}, ctx)
        if chain is not None and not done:
            chains.append(chain)
    return chains


def summarize(state: QueryGenState) -> dict[str, Any]:
    records = state.get("records", [])
    accepted = [r for r in records if r["verification"]["accepted"]]
    reasons: dict[str, int] = {}
    for r in records:
        if not r["verification"]["accepted"]:
            reason = (r["verification"]["reason"] or "unknown").split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
    rates = [r["verification"]["pass_rate"] for r in records if r["verification"]["pass_rate"] is not None]
    return {"summary": {"chains": len(records), "skipped_as_done": state.get("skipped", 0),
                        "discarded_chains": len(state.get("discarded", [])),
                        "slots_without_chain": state.get("empty_slots", 0), "slots_not_run": state.get("not_run", 0),
                        "accepted": len(accepted),
                        "rejected": len(records) - len(accepted), "rejected_by_reason": reasons,
                        "mean_pass_rate": sum(rates) / len(rates) if rates else None}}


# ---------------------------------------------------------------- per-chain subgraph

def _chain(state: ChainState) -> GoldTrajectory:
    return GoldTrajectory.model_validate(state["chain"])


def split_turns(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    chain = _chain(state)
    return {"turns": query_agent.split_turns(chain, chain.seed), "key": task_key(chain, _ctx(runtime)),
            "tiers": {}}


def _model(ctx: QueryGenContext, role: str):
    from envfactory.agents.models import model_for
    return model_for(role, offline=ctx.offline, injected=ctx.chat_models, overrides=ctx.models)


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


def _session_pools(envs: dict[str, Environment]) -> dict[str, Any]:
    """Pooled MCP sessions per environment on the rollout loop (built on first use)."""
    from envfactory.envs.mcp_bridge import EpisodeSessionPool
    pools = _loop_state()["pools"]
    out = {}
    with _loop_lock:
        for name, env in envs.items():
            key = (name, id(env))
            if key not in pools:
                # A worker process's rollout loop is private (no server shares it, no blocking-call guard
                # such as `langgraph dev`'s watches it), so its tool calls run inline on it: a thread hop
                # per call costs more than the sub-millisecond in-memory SQLite work it would move.
                pools[key] = EpisodeSessionPool(env, inline_calls=_worker_flag["in_worker"])
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
    calls = _gold_calls(chain)
    gold = _gold_refs.get(_gold_key(chain, calls))
    return gold if gold is not None else replay_gold(envs, calls)


def _gold_calls(chain: GoldTrajectory) -> list[Call]:
    return [Call(name=c.tool, arguments=c.arguments, masked=c.masked_arguments, env=c.env) for c in chain.calls]


@dataclass
class _Ask:
    """A structured model call a step waits on (``_drive`` or ``_adrive`` makes it)."""
    model: Any
    messages: list[Any]
    schema: type


@dataclass
class _Await:
    """A coroutine a step waits on (a rollout): on the rollout loop, or awaited where the step runs."""
    make: Callable[[], Awaitable[Any]]


def _drive(steps: Generator[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a step in this thread: its model calls directly, its coroutines on the rollout loop."""
    from envfactory.agents.structured import invoke_structured
    reply, error = None, None
    while True:
        try:
            effect = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        reply, error = None, None
        try:
            reply = (invoke_structured(effect.model, effect.messages, effect.schema) if isinstance(effect, _Ask)
                     else _run_async(effect.make()))
        except Exception as exc:  # handed back to the step, which turns it into a rejection reason
            error = exc


async def _adrive(steps: Generator[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a step on the running event loop: while it waits on a model, other slots run."""
    from envfactory.agents.structured import ainvoke_structured
    reply, error = None, None
    while True:
        try:
            effect = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        reply, error = None, None
        try:
            reply = await (ainvoke_structured(effect.model, effect.messages, effect.schema) if isinstance(effect, _Ask)
                           else effect.make())
        except Exception as exc:
            error = exc


def generate_queries(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    return _drive(_generate_queries(state, _ctx(runtime)))


def _generate_queries(state: ChainState, ctx: QueryGenContext):
    chain = _chain(state)
    descriptions = {t.name: t.description for n in chain.envs for t in load_env(n).tool_specs}
    model = _model(ctx, "query")
    if model is None:
        queries = query_agent.template_queries(chain, state["turns"], descriptions)
        return {"queries": queries, "tiers": {**state.get("tiers", {}), "query": query_agent.OFFLINE_TIER}}
    from envfactory.agents.structured import StructuredOutputError
    from envfactory.prompts.registry import default_registry
    turns = [{"actions": "; ".join(descriptions.get(chain.calls[i].tool, chain.calls[i].tool) for i in idx),
              "known": {k: v for i in idx for k, v in query_agent.stated_values(chain.calls[i]).items()}}
             for idx in state["turns"]]
    rendered = default_registry().render("query_agent/generate", ctx.prompt_versions.get("query_agent/generate", "latest"),
                                         persona=ctx.persona, turns=turns)
    update = {"tiers": {**state.get("tiers", {}), "query": "model"},
              "prompts": state.get("prompts", []) + [rendered.ref.model_dump()],
              "models": {**state.get("models", {}), "query": model_name(model)}}
    try:
        out = yield _Ask(model, rendered.messages(), query_agent.GeneratedQueries)
    except StructuredOutputError as exc:
        return {**update, "queries": [], "failure": f"query generation failed: {exc}"}
    except Exception as exc:  # the endpoint failed: reject this task, keep the run going
        return {**update, "queries": [], "failure": f"query generation failed: {type(exc).__name__}: {exc}"}
    if len(out.value.queries) != len(state["turns"]):
        return {**update, "queries": out.value.queries,
                "failure": f"query generation failed: {len(out.value.queries)} messages for {len(state['turns'])} turns"}
    return {**update, "queries": out.value.queries}


def calibrate(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    return _drive(_calibrate(state, _ctx(runtime)))


def _calibrate(state: ChainState, ctx: QueryGenContext):
    if state.get("failure"):
        return {}
    chain = _chain(state)
    queries = state["queries"]
    update: dict[str, Any] = {"tiers": {**state["tiers"], "refine": refine_agent.OFFLINE_TIER}}
    model = _model(ctx, "refine")
    if model is not None:
        from envfactory.prompts.registry import default_registry
        known = [{k: v for i in idx for k, v in query_agent.stated_values(chain.calls[i]).items()} for idx in state["turns"]]
        rendered = default_registry().render("refine_agent/calibrate", ctx.prompt_versions.get("refine_agent/calibrate", "latest"),
                                             queries=queries, known=known)
        update = {"tiers": {**state["tiers"], "refine": "model"},
                  "prompts": state.get("prompts", []) + [rendered.ref.model_dump()],
                  "models": {**state.get("models", {}), "refine": model_name(model)}}
        try:
            out = yield _Ask(model, rendered.messages(), refine_agent.RefinedQueries)
        except Exception as exc:
            return {**update, "failure": f"refinement failed: {exc}"}
        if len(out.value.queries) != len(queries):
            return {**update, "failure": f"refinement failed: {len(out.value.queries)} messages for {len(queries)} turns"}
        queries = out.value.queries
    names, params = refine_agent.tool_and_param_names(_tools(chain))
    report = refine_agent.check_leakage(chain, queries, state["turns"], names, params)
    return {**update, "queries": queries, "leaks": report.leaks}


def roll_out(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    return _drive(_roll_out(state, _ctx(runtime)))


def _roll_out(state: ChainState, ctx: QueryGenContext):
    if state.get("failure") or state.get("leaks"):
        return {"rollouts": []}
    chain = _chain(state)
    envs = {n: load_env(n) for n in chain.envs}
    turns = _user_turns(chain, state)
    try:
        gold = _gold_reference(chain, envs)
    except GoldReplayError as exc:
        return {"rollouts": [{"error": f"gold replay failed: {exc}"}]}
    model = _model(ctx, "rollout")
    update: dict[str, Any] = {"tiers": {**state["tiers"], "rollout": rollout_agent.ORACLE_TIER if model is None else "model"}}
    system_prompt = DEFAULT_SYSTEM_PROMPT
    if model is not None:
        from envfactory.prompts.registry import default_registry
        service = "; ".join(load_env(n).manifest.description for n in chain.envs)
        rendered = default_registry().render("rollout_agent/system", ctx.prompt_versions.get("rollout_agent/system", "latest"),
                                             service=service)
        system_prompt = rendered.text.strip()
        update["prompts"] = state.get("prompts", []) + [rendered.ref.model_dump()]
        update["models"] = {**state.get("models", {}), "rollout": model_name(model)}
        if ctx.mode == "conv":
            from envfactory.agents import user_simulator
            user_model = _model(ctx, "user_simulator")
            update["tiers"]["user_simulator"] = "model" if user_model is not None else user_simulator.OFFLINE_TIER
    results = []
    for _ in range(max(1, ctx.rollouts)):
        try:
            if model is None:
                run = rollout_agent.oracle_rollout(envs, turns, system_prompt)
            else:
                simulator = None
                if ctx.mode == "conv":
                    from envfactory.agents import user_simulator
                    user_model = _model(ctx, "user_simulator")
                    simulator = (user_simulator.ModelUser(user_model, turns, ctx.prompt_versions) if user_model is not None
                                 else user_simulator.ScriptedUser(turns))
                in_worker = _worker_flag["in_worker"]
                run = yield _Await(lambda: rollout_agent.model_rollout(
                    envs, turns, model, system_prompt, ctx.max_steps, ctx.max_tokens, simulator,
                    sessions=_session_pools(envs), inline_episodes=in_worker))
        except Exception as exc:  # a failed model endpoint or loop: this rollout has no score
            results.append({"error": f"rollout failed: {type(exc).__name__}: {exc}"})
            continue
        try:
            reward = score_episodes(gold, run.episodes, n_malformed=run.malformed_calls, cfg=RewardConfig(tau=ctx.tau))
            results.append({"messages": [m.model_dump() for m in run.messages], "reward": reward.model_dump(),
                            "tier": run.tier, "stopped": run.stopped, "steps": run.steps, "tokens": run.tokens,
                            "final_hashes": {n: ep.state_hash() for n, ep in run.episodes.items()}})
        finally:
            run.close()
    return {**update, "rollouts": results}


def verify(state: ChainState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    return _drive(_verify(state, _ctx(runtime)))


def _verify(state: ChainState, ctx: QueryGenContext):
    chain = _chain(state)
    rollouts = state.get("rollouts", [])
    reason = None
    if state.get("failure"):
        reason = state["failure"]
    elif state.get("leaks"):
        reason = "leakage: " + "; ".join(state["leaks"])
    elif rollouts and all("error" in r for r in rollouts):
        reason = "infrastructure: " + rollouts[0]["error"]
    scored = [r for r in rollouts if "reward" in r and r["reward"]["score"] is not None]
    passed = [r for r in scored if r["reward"]["score"] >= ctx.pass_threshold]
    pass_rate = len(passed) / len(scored) if scored else None
    if reason is None and not scored:
        reason = "infrastructure: no rollout could be scored"
    elif reason is None and not passed:
        best = max(scored, key=lambda r: r["reward"]["score"])
        reason = f"no rollout reached the gold state: best reward {best['reward']['score']:.2f}"
    kept = max(passed or scored or [{}], key=lambda r: r.get("reward", {}).get("score") or 0)
    for r in rollouts:
        if "error" in r and reason is None and not passed:
            reason = "infrastructure: " + r["error"]
    judge = (yield from _judge(ctx, kept.get("messages", []))) if reason is None else None
    record = TrajectoryRecord(
        key=state["key"], mode=ctx.mode,
        envs=[EnvRef(name=n, version=load_env(n).manifest.version, initial_state_hash=chain.initial_hashes[n],
                     final_state_hash=chain.final_hashes[n]) for n in chain.envs],
        tools=_tools(chain), system_prompt=DEFAULT_SYSTEM_PROMPT, turns=_user_turns(chain, state),
        messages=kept.get("messages", []),
        verification=Verification(accepted=reason is None, reason=reason, reward=kept.get("reward", {}),
                                  pass_rate=pass_rate, rollouts=len(rollouts), difficulty=_difficulty(pass_rate),
                                  judge=judge),
        provenance=Provenance(tiers=state["tiers"], models=state.get("models", {}), prompts=state.get("prompts", []),
                              seed=chain.seed, chain_id=chain.chain_id, code_version=CODE_VERSION))
    store = _store(ctx)
    if store is not None and not _worker_flag["in_worker"]:
        store.put(record)
    return {"records": [record.model_dump()]}


def _judge(ctx: QueryGenContext, messages: list[dict[str, Any]]):
    """A secondary opinion on an accepted trajectory; recorded, never deciding acceptance."""
    model = _model(ctx, "judge")
    if model is None or not messages:
        return None
    from envfactory.agents.judge import Verdict
    from envfactory.prompts.registry import default_registry
    lines = []
    for m in messages:
        calls = "; ".join(f"{c['name']}({json.dumps(c['arguments'])})" for c in m.get("tool_calls", []))
        lines.append(f"{m['role']}: {m['content']}" + (f" [calls: {calls}]" if calls else ""))
    rendered = default_registry().render("judge/trajectory", ctx.prompt_versions.get("judge/trajectory", "latest"),
                                         conversation="\n".join(lines))
    try:
        verdict = (yield _Ask(model, rendered.messages(), Verdict)).value
    except Exception as exc:  # a judge failure costs the signal, never the trajectory
        return {"error": f"{type(exc).__name__}: {exc}", "prompt": rendered.ref.model_dump()}
    return {**verdict.model_dump(), "model": model_name(model), "prompt": rendered.ref.model_dump()}


def _difficulty(pass_rate: float | None) -> str | None:
    if pass_rate is None:
        return None
    if pass_rate == 0:
        return "unsolved"
    return "easy" if pass_rate >= 0.75 else "medium" if pass_rate >= 0.4 else "hard"


def _user_turns(chain: GoldTrajectory, state: ChainState) -> list[UserTurn]:
    turns = []
    for query, indices in zip(state.get("queries") or [""] * len(state["turns"]), state["turns"]):
        calls = [chain.calls[i] for i in indices]
        turns.append(UserTurn(query=query, gold_calls=[GoldCallRef(env=c.env, name=c.tool, arguments=c.arguments,
                                                                   masked_arguments=c.masked_arguments) for c in calls],
                              details={k: v for c in calls for k, v in query_agent.stated_values(c).items()}))
    return turns


def _tools(chain: GoldTrajectory) -> list[dict[str, Any]]:
    return [spec.openai_schema() for n in chain.envs for spec in load_env(n).tool_specs]


_stores: dict[str, Any] = {}
_stores_lock = threading.Lock()


def _store(ctx: QueryGenContext):
    if not ctx.store_path:
        return None
    from envfactory.data.store import RecordStore
    with _stores_lock:  # slots start together: one store object (and one schema set-up) per path
        if ctx.store_path not in _stores:
            _stores[ctx.store_path] = RecordStore(ctx.store_path)
        return _stores[ctx.store_path]


def make_chain_graph():
    """One chain, one node per step (for Studio and step-by-step inspection; ``make_graph`` runs the
    same steps inside its ``process_chain`` node)."""
    g = StateGraph(ChainState, context_schema=QueryGenContext)
    g.add_node("split_turns", split_turns)
    g.add_node("generate_queries", generate_queries)
    g.add_node("calibrate", calibrate)
    g.add_node("roll_out", roll_out)
    g.add_node("verify", verify)
    g.add_edge(START, "split_turns")
    g.add_edge("split_turns", "generate_queries")
    g.add_edge("generate_queries", "calibrate")
    g.add_edge("calibrate", "roll_out")
    g.add_edge("roll_out", "verify")
    g.add_edge("verify", END)
    return g.compile(name="QueryGen chain")


def process_chain(state: SlotState, runtime: Runtime[QueryGenContext],
                  config: RunnableConfig = None) -> dict[str, Any]:  # LangGraph injects ``config`` by this annotation
    """One task slot: sample its chain, then every step of ``make_chain_graph`` (same functions,
    same state updates) inside this one node; with ``workers`` set, as a coroutine in a worker
    process (``arun_slot``), beside that worker's other slots.

    A nested graph per chain made LangGraph's own bookkeeping (a loop, channels, checkpoints and a
    thread pool per chain) cost ~4.5 ms of CPU per task, more than all five steps together; with the
    model's latency hidden by concurrency, that CPU was the run's wall time. Studio shows the
    per-step graph as ``querygen_chain``.

    ``config["configurable"]["stop"]`` (a ``threading.Event``, e.g. set on Ctrl-C by the CLI) stops the run
    soon: chains in flight finish and are stored, slots not started yet are skipped (``slots_not_run``),
    and a rerun resumes. Without it, an interrupted run would first work through every queued slot.
    """
    stop = ((config or {}).get("configurable") or {}).get("stop")
    if stop is not None and stop.is_set():
        return {"not_run": 1}
    ctx = _ctx(runtime)
    if ctx.workers > 0 and not _worker_flag["in_worker"]:
        from envfactory.graphs import querygen_workers
        out = querygen_workers.run_in_worker(ctx.workers, _run_slot_in_worker, dict(state), ctx)
        store = _store(ctx)
        if store is not None:  # one writer: the records come back here and are stored by this process
            for record in out.get("records", []):
                store.put(TrajectoryRecord.model_validate(record))
        return out
    return run_slot(state, runtime)


def run_slot(state: SlotState, runtime: Any) -> dict[str, Any]:
    """One slot in this thread (threads mode): model calls block it, rollouts wait on the rollout loop."""
    ctx = _ctx(runtime)
    update, chain_state = _start_slot(state, ctx)
    if chain_state is None:
        return update
    chain_state.update(split_turns(chain_state, runtime))
    for step in (_generate_queries, _calibrate, _roll_out, _verify):
        _apply(chain_state, _drive(step(chain_state, ctx)))
    return {**update, "records": chain_state.get("records", [])}


async def arun_slot(state: SlotState, ctx: QueryGenContext) -> dict[str, Any]:
    """One slot as a coroutine (worker processes): many slots share one thread and one event loop,
    so a process is busy with some slot's CPU work while the others wait on their models."""
    update, chain_state = _start_slot(state, ctx)
    if chain_state is None:
        return update
    chain_state.update(split_turns(chain_state, ContextRuntime(ctx)))
    for step in (_generate_queries, _calibrate, _roll_out, _verify):
        _apply(chain_state, await _adrive(step(chain_state, ctx)))
    return {**update, "records": chain_state.get("records", [])}


def _start_slot(state: SlotState, ctx: QueryGenContext) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The slot's update so far, and its chain's state (None: no chain to process)."""
    if "chain" in state:
        chain, discarded, done = GoldTrajectory.model_validate(state["chain"]), [], False
    else:
        chain, discarded, done = sample_slot(state, ctx)
    update: dict[str, Any] = {"discarded": discarded} if discarded else {}
    if chain is None:
        return {**update, "empty_slots": 1}, None
    if done:
        return {**update, "skipped": 1}, None
    return update, {"chain": chain.model_dump()}


def _apply(chain_state: dict[str, Any], step_update: dict[str, Any]) -> None:
    """A step's update, with ``records`` appended (the reducer the per-step graph declares)."""
    step_update = dict(step_update)
    records = step_update.pop("records", None)
    chain_state.update(step_update)
    if records:
        chain_state["records"] = chain_state.get("records", []) + records


_worker_flag = {"in_worker": False}


class ContextRuntime:
    """What the steps read of LangGraph's ``Runtime``, the context alone: for running the steps
    outside a graph (worker processes, benchmarks, tests)."""

    def __init__(self, context: QueryGenContext):
        self.context = context


def _run_slot_in_worker(state: SlotState, ctx: QueryGenContext) -> Awaitable[dict[str, Any]]:
    """A slot in a worker process, on its rollout loop; records are stored by the parent (one
    writer per store)."""
    _worker_flag["in_worker"] = True
    return arun_slot(state, ctx)


def make_graph():
    """The QueryGen graph (compiled without a checkpointer: ``langgraph dev`` injects one)."""
    g = StateGraph(QueryGenState, input_schema=QueryGenInput, context_schema=QueryGenContext)
    g.add_node("sample_chains", sample_chains)
    g.add_node("process_chain", process_chain)
    g.add_node("summarize", summarize)
    g.add_edge(START, "sample_chains")
    g.add_conditional_edges("sample_chains", fan_out, ["process_chain", "summarize"])
    g.add_edge("process_chain", "summarize")
    g.add_edge("summarize", END)
    return g.compile(name="QueryGen")
