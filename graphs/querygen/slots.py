"""One task slot: sample its own chain from its own block of seeds, then run the chain's steps
(in this thread, or as a coroutine in a worker process)."""
from __future__ import annotations


from collections.abc import Awaitable
from typing import Any


from envfactory.envs.chains.sampling import GoldTrajectory


from envfactory.graphs.querygen.context import ContextRuntime, QueryGenContext, _ctx
from envfactory.graphs.querygen.driver import _adrive, _drive
from envfactory.graphs.querygen.resources import _keep_in_memory, _remember_gold, _sampler, _store, _worker_flag
from envfactory.graphs.querygen.state import SlotState
from envfactory.graphs.querygen.steps import (_calibrate, _generate_queries, _roll_out, _validated_chains, _verify, split_turns,
                                             task_key)

SEEDS_PER_SLOT = 8

def slot_seeds(slot: int, seed: int, exact: bool = False) -> range:
    """The seeds task slot ``slot`` tries, in order, until one gives a usable chain.

    Blocks of ``SEEDS_PER_SLOT`` per slot: a slot's chain does not depend on how many slots the
    run has, so a run resumed with a larger ``n`` finds its earlier chains again (and skips them)."""
    if exact:
        return range(seed, seed + 1)
    start = seed + slot * SEEDS_PER_SLOT
    return range(start, start + SEEDS_PER_SLOT)

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

STEPS = ("split_turns", "generate_queries", "calibrate", "roll_out", "verify")


def progress_event(state: SlotState, step: str, chain_state: dict[str, Any] | None = None,
                   update: dict[str, Any] | None = None) -> dict[str, Any]:
    """A custom stream event (``stream_mode="custom"``): which slot finished which step; Studio shows
    them as the run's progress, between the ``process_chain`` updates."""
    event: dict[str, Any] = {"event": "querygen_step", "slot": state.get("slot"), "step": step}
    chain = (chain_state or {}).get("chain")
    if chain:
        event["chain_id"] = chain.get("chain_id")
    if step in STEPS:
        event["done"], event["of"] = STEPS.index(step) + 1, len(STEPS)
    for record in (chain_state or {}).get("records", [])[-1:]:
        event.update(accepted=record["verification"]["accepted"], pass_rate=record["verification"]["pass_rate"])
    for key in ("skipped", "empty_slots", "not_done"):
        if (update or {}).get(key) or (chain_state or {}).get(key):
            event["outcome"] = key
    return event


def _writer(runtime: Any):
    """The run's custom stream writer (a no-op outside a graph run, e.g. with ``ContextRuntime``)."""
    return getattr(runtime, "stream_writer", None) or (lambda _event: None)


def run_slot(state: SlotState, runtime: Any) -> dict[str, Any]:
    """One slot in this thread (threads mode): model calls block it, rollouts wait on the rollout loop.
    Each finished step is a custom stream event (``progress_event``)."""
    ctx = _ctx(runtime)
    write = _writer(runtime)
    update, chain_state = _start_slot(state, ctx)
    if chain_state is None:
        write(progress_event(state, "sampled", None, update))
        return update
    write(progress_event(state, "sampled", chain_state))
    chain_state.update(split_turns(chain_state, runtime))
    write(progress_event(state, "split_turns", chain_state))
    for name, step in zip(STEPS[1:], (_generate_queries, _calibrate, _roll_out, _verify)):
        _apply(chain_state, _drive(step(chain_state, ctx)))
        write(progress_event(state, name, chain_state))
    return slot_update(update, chain_state)

async def arun_slot(state: SlotState, ctx: QueryGenContext) -> dict[str, Any]:
    """One slot as a coroutine (worker processes): many slots share one thread and one event loop,
    so a process is busy with some slot's CPU work while the others wait on their models."""
    update, chain_state = _start_slot(state, ctx)
    if chain_state is None:
        return update
    chain_state.update(split_turns(chain_state, ContextRuntime(ctx)))
    for step in (_generate_queries, _calibrate, _roll_out, _verify):
        _apply(chain_state, await _adrive(step(chain_state, ctx)))
    return slot_update(update, chain_state)

def _start_slot(state: SlotState, ctx: QueryGenContext) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The slot's update so far, and its chain's state (None: no chain to process)."""
    if "chain" in state:
        chain, discarded, done = GoldTrajectory.model_validate(state["chain"]), [], False
    else:
        chain, discarded, done = sample_slot(state, ctx)
    update: dict[str, Any] = {"discarded_chains": len(discarded)} if discarded else {}
    no_selector = sum(str(d.get("reason") or "").startswith("no selector") for d in discarded)
    if no_selector:
        update["selector_dropped"] = no_selector
    if chain is None:
        return {**update, "empty_slots": 1}, None
    if done:
        return {**update, "skipped": 1}, None
    if chain.selector_redraws:
        update["selector_redrawn"] = 1
    data = chain.model_dump()
    _validated_chains.put(id(data), (data, chain))  # the steps read the chain back without validating it again
    return update, {"chain": data}

def slot_update(update: dict[str, Any], chain_state: dict[str, Any]) -> dict[str, Any]:
    """What a processed chain adds to the run's state: its record, or a task not done."""
    out = {**update, "records": chain_state.get("records", [])}
    if chain_state.get("not_done"):
        out["not_done"] = chain_state["not_done"]
    return out

def slot_result(out: dict[str, Any], ctx: QueryGenContext) -> dict[str, Any]:
    """A slot's update for the run's state: its records become their keys and verdict counts (the
    bodies are in the record store already, or, without one, in the in-memory buffer
    ``run_records`` reads)."""
    out = dict(out)
    records = out.pop("records", None) or []
    if not records:
        return out
    if _store(ctx) is None:
        _keep_in_memory(records)
    verdicts: dict[str, float] = {}
    for r in records:
        v = r["verification"]
        outcome = "accepted" if v["accepted"] else "rejected"
        verdicts[outcome] = verdicts.get(outcome, 0) + 1
        if not v["accepted"]:
            reason = "reason:" + (v["reason"] or "unknown").split(":")[0]
            verdicts[reason] = verdicts.get(reason, 0) + 1
        if v["pass_rate"] is not None:
            verdicts["pass_rate_sum"] = verdicts.get("pass_rate_sum", 0) + v["pass_rate"]
            verdicts["pass_rates"] = verdicts.get("pass_rates", 0) + 1
    return {**out, "record_keys": [r["key"] for r in records], "verdicts": verdicts}

def _apply(chain_state: dict[str, Any], step_update: dict[str, Any]) -> None:
    """A step's update, with ``records`` appended (the reducer the per-step graph declares)."""
    step_update = dict(step_update)
    records = step_update.pop("records", None)
    chain_state.update(step_update)
    if records:
        chain_state["records"] = chain_state.get("records", []) + records

def _run_slot_in_worker(state: SlotState, ctx: QueryGenContext) -> Awaitable[dict[str, Any]]:
    """A slot in a worker process, on its rollout loop; records are stored by the parent (one
    writer per store)."""
    _worker_flag["in_worker"] = True
    return arun_slot(state, ctx)
