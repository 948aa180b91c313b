"""The QueryGen graph's own nodes: check the run and build its sampler, fan out over task slots,
process a slot, summarize."""
from __future__ import annotations


from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Send

from envfactory.data.records import TrajectoryRecord


from envfactory.graphs.querygen.context import QueryGenContext, _ctx
from envfactory.graphs.querygen.resources import _sampler, _store, _worker_flag
from envfactory.graphs.querygen.chain import CHAIN_GRAPH
from envfactory.graphs.querygen.slots import _run_slot_in_worker, _start_slot, run_slot, slot_update
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

def summarize(state: QueryGenState) -> dict[str, Any]:
    records = state.get("records", [])
    accepted = [r for r in records if r["verification"]["accepted"]]
    reasons: dict[str, int] = {}
    for r in records:
        if not r["verification"]["accepted"]:
            reason = (r["verification"]["reason"] or "unknown").split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
    rates = [r["verification"]["pass_rate"] for r in records if r["verification"]["pass_rate"] is not None]
    no_selector = sum(d.get("reason", "").startswith("no selector") for d in state.get("discarded", []))
    return {"summary": {"chains": len(records), "skipped_as_done": state.get("skipped", 0),
                        "discarded_chains": len(state.get("discarded", [])),
                        "selector_redrawn": state.get("selector_redrawn", 0), "selector_dropped": no_selector,
                        "undetermined": reasons.get("undetermined", 0),
                        "slots_without_chain": state.get("empty_slots", 0), "slots_not_run": state.get("not_run", 0),
                        "not_done": state.get("not_done", 0),
                        "accepted": len(accepted),
                        "rejected": len(records) - len(accepted), "rejected_by_reason": reasons,
                        "mean_pass_rate": sum(rates) / len(rates) if rates else None}}

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
    if ctx.workers > 0 and not _worker_flag["in_worker"]:
        from envfactory.graphs.querygen import workers
        out = workers.run_in_worker(ctx.workers, _run_slot_in_worker, dict(state), ctx)
        store = _store(ctx)
        if store is not None:  # one writer: the records come back here and are stored by this process
            for record in out.get("records", []):
                store.put(TrajectoryRecord.model_validate(record))
        return out
    if ctx.step_graph:
        update, chain_state = _start_slot(state, ctx)
        if chain_state is None:
            return update
        out = CHAIN_GRAPH.invoke(chain_state, config, context=ctx)
        return slot_update(update, out)
    return run_slot(state, runtime)
