"""The QueryGen graph's own nodes: check the run and build its sampler, fan out over task slots in
waves, process a slot, start the next wave, summarize."""
from __future__ import annotations


from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Send

from envfactory.data.records import TrajectoryRecord


from envfactory.graphs.querygen.context import QueryGenContext, _ctx
from envfactory.graphs.querygen.resources import _sampler, _store, _worker_flag
from envfactory.graphs.querygen.chain import CHAIN_GRAPH
from envfactory.graphs.querygen.slots import (_run_slot_in_worker, _start_slot, _writer, progress_event, run_slot,
                                              slot_result, slot_update)
from envfactory.graphs.querygen.state import QueryGenState, SlotState

def sample_chains(state: QueryGenState, runtime: Runtime[QueryGenContext]) -> dict[str, Any]:
    """Check the run's environments and build their sampler once; each slot samples its own chain."""
    names = tuple(sorted(state.get("envs") or []))
    if not names:
        raise ValueError("QueryGen needs at least one environment name in 'envs'")
    if state.get("n", 4) < 0:
        raise ValueError(f"QueryGen needs n >= 0 tasks, got {state['n']}")
    if "seeds" in state and not all(isinstance(x, int) and not isinstance(x, bool) for x in state["seeds"]):
        raise ValueError(f"QueryGen 'seeds' must be a list of integers, got {state['seeds']!r}")
    ctx = _ctx(runtime)
    if ctx.executor not in ("threads", "ray"):
        raise ValueError(f"unknown QueryGen executor {ctx.executor!r}; known: threads, ray")
    if ctx.slots_per_wave < 1:
        raise ValueError(f"QueryGen needs slots_per_wave >= 1, got {ctx.slots_per_wave}")
    _sampler(names, state.get("max_envs", 1))
    _store(ctx)
    if ctx.executor == "ray" and not _worker_flag["in_worker"]:  # join the cluster and start the actors once, up front
        from envfactory.graphs.querygen.ray_executor import pool
        pool(ctx)
    return {"next_slot": 0, "wave_end": min(_slot_count(state), ctx.slots_per_wave)}

def _slot_count(state: QueryGenState) -> int:
    return len(state["seeds"]) if "seeds" in state else state.get("n", 4)

def fan_out(state: QueryGenState) -> list[Send] | str:
    """Send the current wave's slots (``next_slot`` up to ``wave_end``); none left: summarize.

    Slots go out in waves of ``QueryGenContext.slots_per_wave``: LangGraph's bookkeeping per finished
    task grows with the tasks pending in its step (0.29 ms at 800, 0.96 ms at 12,800), so sending
    all of a large run at once made its total cost quadratic in n."""
    names, max_envs = sorted(state["envs"]), state.get("max_envs", 1)
    start, end = state.get("next_slot", 0), state.get("wave_end", _slot_count(state))
    if start >= end:
        return "summarize"
    if "seeds" in state:
        slots = [{"slot": i, "seed": state["seeds"][i], "exact_seed": True} for i in range(start, end)]
    else:
        slots = [{"slot": i, "seed": state.get("seed", 0)} for i in range(start, end)]
    return [Send("process_chain", {**slot, "envs": names, "max_envs": max_envs}) for slot in slots]

def next_wave(state: QueryGenState, runtime: Runtime[QueryGenContext], config: RunnableConfig = None) -> dict[str, Any]:
    """After a wave: the next one's range, or, when the run was asked to stop, none (the slots
    left are counted as not run)."""
    total, done = _slot_count(state), state.get("wave_end", 0)
    stop = ((config or {}).get("configurable") or {}).get("stop")
    if stop is not None and stop.is_set():
        return {"next_slot": total, "wave_end": total, **({"not_run": total - done} if total > done else {})}
    return {"next_slot": done, "wave_end": min(total, done + _ctx(runtime).slots_per_wave)}

def summarize(state: QueryGenState) -> dict[str, Any]:
    v = state.get("verdicts") or {}
    accepted, rejected = int(v.get("accepted", 0)), int(v.get("rejected", 0))
    reasons = {k[len("reason:"):]: int(n) for k, n in sorted(v.items()) if k.startswith("reason:")}
    rates = v.get("pass_rates", 0)
    return {"summary": {"chains": accepted + rejected, "skipped_as_done": state.get("skipped", 0),
                        "discarded_chains": state.get("discarded_chains", 0),
                        "selector_redrawn": state.get("selector_redrawn", 0),
                        "selector_dropped": state.get("selector_dropped", 0),
                        "undetermined": reasons.get("undetermined", 0),
                        "slots_without_chain": state.get("empty_slots", 0), "slots_not_run": state.get("not_run", 0),
                        "not_done": state.get("not_done", 0),
                        "accepted": accepted,
                        "rejected": rejected, "rejected_by_reason": reasons,
                        "mean_pass_rate": v["pass_rate_sum"] / rates if rates else None}}

def process_chain(state: SlotState, runtime: Runtime[QueryGenContext],
                  config: RunnableConfig = None) -> dict[str, Any]:  # LangGraph injects ``config`` by this annotation
    """One task slot: sample its chain, then every step of ``make_chain_graph`` (same functions,
    same state updates) inside this one node; with ``workers`` set, as a coroutine in a worker
    process (``arun_slot``), beside that worker's other slots.

    By default the steps run inline: the same five steps as a nested graph (``CHAIN_GRAPH``) cost
    LangGraph's own bookkeeping (a loop, channels, checkpoints per chain) ~3.8 ms more CPU per task
    (3.1 ms inline for all five steps, offline, measured 2026-12-02), and with the model's latency
    hidden by concurrency that CPU is the run's wall time. ``QueryGenContext.step_graph`` runs each
    chain through ``CHAIN_GRAPH`` instead (threads mode), so Studio streams every step as its own
    node; Studio draws the steps inside this node either way.

    ``config["configurable"]["stop"]`` (a ``threading.Event``, e.g. set on Ctrl-C by the CLI) stops the run
    soon: chains in flight finish and are stored, slots not started yet are skipped (``slots_not_run``),
    and a rerun resumes. Without it, an interrupted run would first work through every queued slot.
    """
    stop = ((config or {}).get("configurable") or {}).get("stop")
    if stop is not None and stop.is_set():
        return {"not_run": 1}
    ctx = _ctx(runtime)
    if ctx.executor == "ray" and not _worker_flag["in_worker"]:
        from envfactory.graphs.querygen.ray_executor import run_slot_on_ray
        store = _store(ctx)
        out = run_slot_on_ray(dict(state), ctx, store.has if store is not None else None)
        if store is not None:  # one writer: the records come back here and are stored by this process
            for record in out.get("records", []):
                store.put(TrajectoryRecord.model_validate(record))
        _writer(runtime)(progress_event(state, "verify", {"records": out.get("records", [])}, out))  # one event: an actor ran the steps
        return slot_result(out, ctx)
    if ctx.workers > 0 and not _worker_flag["in_worker"]:
        from envfactory.graphs.querygen import workers
        out = workers.run_in_worker(ctx.workers, _run_slot_in_worker, dict(state), ctx)
        store = _store(ctx)
        if store is not None:  # one writer: the records come back here and are stored by this process
            for record in out.get("records", []):
                store.put(TrajectoryRecord.model_validate(record))
        _writer(runtime)(progress_event(state, "verify", {"records": out.get("records", [])}, out))  # one event: the worker ran the steps
        return slot_result(out, ctx)
    if ctx.step_graph:
        update, chain_state = _start_slot(state, ctx)
        if chain_state is None:
            return update
        out = CHAIN_GRAPH.invoke(chain_state, config, context=ctx)
        return slot_result(slot_update(update, out), ctx)
    return slot_result(run_slot(state, runtime), ctx)
