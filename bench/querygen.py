"""QueryGen throughput with a model of fixed latency, against the ideal for the concurrency.

Two scripted rollout models answer every request after ``latency`` seconds, so the figures
measure the graph's own cost and parallelism, not a server:

- ``text``: answers every turn with text and no tool call (the cheapest possible rollout);
- ``gold_replay``: the realistic path: one gold tool call per model turn through the MCP tools,
  then a closing answer per user turn, so tools, episodes and the reward all do their real work
  (and every task should be accepted).

Ideal wall time = every model call's latency, summed, divided by the concurrency (only model time
counts); efficiency = ideal / measured. Two ceilings come with it:

- ``zero_cpu_efficiency``: what a run with no CPU cost at all would reach: tasks differ in length,
  and at the end of a run fewer than ``concurrency`` tasks are left in flight (the slots, in order,
  each taking the next task when free). With few tasks per slot this alone stays well under 100%.
- ``cpu_bound_efficiency``: ideal / (CPU seconds spread over the cores the run can use).
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from envfactory.graphs import querygen
from envfactory.graphs.querygen import QueryGenContext, make_graph


class FixedLatencyModel(BaseChatModel):
    """Answers with text and no tool call after ``latency`` seconds."""

    latency: float = 0.05
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "fixed-latency"

    def bind_tools(self, tools, **kwargs):
        return self

    def _reply(self, messages) -> AIMessage:
        return AIMessage("I have nothing to add.")

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        time.sleep(self.latency)
        self.calls += 1
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        await asyncio.sleep(self.latency)
        self.calls += 1
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])


class GoldReplayModel(FixedLatencyModel):
    """Makes the task's gold calls, one per model turn, then closes each user turn with text.

    ``scripts`` maps the user messages of a conversation so far to the gold calls of its latest
    turn; the model finds its place from the conversation (those messages, and how many replies it
    made since the last one), so one model object serves every concurrent rollout.
    """

    scripts: dict[tuple[str, ...], list[tuple[str, dict]]] = {}

    @property
    def _llm_type(self) -> str:
        return "gold-replay"

    def _reply(self, messages) -> AIMessage:
        humans = [i for i, m in enumerate(messages) if m.type == "human"]
        calls = self.scripts[tuple(messages[i].content for i in humans)]
        done = sum(m.type == "ai" for m in messages[humans[-1]:])
        if done < len(calls):
            name, args = calls[done]
            return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{len(messages)}", "type": "tool_call"}])
        return AIMessage("Done.")


def gold_scripts(env: str, tasks: int, seed: int, ctx: QueryGenContext) -> dict[tuple[str, ...], list[tuple[str, dict]]]:
    """The run's tasks as the graph's own steps make them (same sampler, turns and queries)."""
    runtime = querygen.ContextRuntime(ctx)
    scripts: dict[tuple[str, ...], list[tuple[str, dict]]] = {}
    for gold in querygen.slot_chains([env], tasks, seed, ctx=ctx):
        chain = gold.model_dump()
        state: dict[str, Any] = {"chain": chain}
        state.update(querygen.split_turns(state, runtime))
        state.update(querygen.generate_queries(state, runtime))
        for k, idx in enumerate(state["turns"]):
            scripts.setdefault(tuple(state["queries"][:k + 1]),
                               [(chain["calls"][i]["tool"], chain["calls"][i]["arguments"]) for i in idx])
    return scripts


def _model_calls(model: FixedLatencyModel, records: list[dict[str, Any]]) -> int:
    """The model's calls: its own counter, or (in worker processes, where a copy of it answered)
    the assistant messages of the records (one rollout per task, every reply recorded)."""
    return model.calls or sum(m["role"] == "assistant" for r in records for m in r["messages"])


def zero_cpu_makespan(task_seconds: list[float], concurrency: int) -> float:
    """Wall time of tasks of these model times, in this order, on ``concurrency`` slots, at no CPU cost."""
    import heapq
    free = [0.0] * max(1, concurrency)
    for seconds in task_seconds:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def _run(graph, model: FixedLatencyModel, env: str, tasks: int, seed: int, concurrency: int, latency: float,
         workers: int = 0) -> dict[str, Any]:
    from envfactory.graphs.querygen.workers import worker_cpu_seconds
    ctx = QueryGenContext(rollouts=1, chat_models={"rollout": model}, workers=workers)
    model.calls = 0
    cpu, wcpu, start = time.process_time(), worker_cpu_seconds(), time.perf_counter()
    out = graph.invoke({"envs": [env], "n": tasks, "seed": seed}, context=ctx, config={"max_concurrency": concurrency})
    measured = time.perf_counter() - start
    parent_cpu, worker_cpu = time.process_time() - cpu, worker_cpu_seconds() - wcpu
    cpu = parent_cpu + worker_cpu
    records = querygen.run_records(out)  # this process's last RECENT_RECORDS (bench_querygen caps tasks to fit)
    processed = len(records)
    calls = _model_calls(model, records)
    ideal = calls * latency / concurrency
    in_slot_order = sorted(records, key=lambda r: r["provenance"]["seed"])  # a slot's seeds follow the slot's
    task_seconds = [latency * sum(m["role"] == "assistant" for m in r["messages"]) for r in in_slot_order]
    return {"tasks": processed, "accepted": out["summary"]["accepted"], "model_calls": calls, "workers": workers,
            "measured_s": round(measured, 3), "ideal_s": round(ideal, 3), "efficiency": ideal / measured,
            "cpu_ms_per_task": round(cpu * 1000 / max(processed, 1), 2),
            **({"parent_cpu_ms_per_task": round(parent_cpu * 1000 / max(processed, 1), 2)} if workers else {}),
            "model_ms_per_task": round(calls * latency * 1000 / max(processed, 1), 1),
            "zero_cpu_efficiency": ideal / max(ideal, zero_cpu_makespan(task_seconds, concurrency)),
            "cpu_bound_efficiency": ideal / max(ideal, cpu / max(1, min(workers, os.cpu_count() or 1)))}


def bench_querygen(tasks: int = 1024, concurrency: tuple[int, ...] | int = (8, 32), latency: float = 0.05,
                   env: str = "library", models: tuple[str, ...] = ("text", "gold_replay"), seed: int = 0,
                   workers: tuple[str, ...] = ("threads", "processes"), repeats: int = 3) -> dict[str, Any]:
    """Efficiency per model kind, concurrency and worker kind; keys like ``gold_replay@32`` (chains
    on threads of this process) and ``gold_replay@32/processes`` (one worker process per core, each
    running its share of the chains in flight on its event loop, ``QueryGenContext.workers``). Each
    case runs ``repeats`` times (an odd number, so the median is one of the runs) and reports its
    median run with the lowest and highest efficiency. 1024 tasks by default: with fewer, the runs'
    tails (fewer than ``concurrency`` tasks left in flight) keep even a run at no CPU cost under 95%
    of ideal at 32 (89% at 128 tasks, 98% at 1024)."""
    from envfactory.graphs.querygen.workers import shutdown_workers
    if repeats < 1 or repeats % 2 == 0:
        raise ValueError(f"repeats must be an odd number >= 1 (the median must be one of the runs), got {repeats}")
    if not 1 <= tasks <= querygen.RECENT_RECORDS:
        raise ValueError(f"tasks must be between 1 and {querygen.RECENT_RECORDS} (the records a run keeps in memory), got {tasks}")
    graph = make_graph()
    levels = (concurrency,) if isinstance(concurrency, int) else tuple(concurrency)
    warm_seed, warm_n = seed + 100_000, max(levels)
    results: dict[str, Any] = {"latency_s": latency, "tasks": tasks, "cpus": os.cpu_count()}
    for kind in models:
        if kind == "text":
            make = lambda lat: FixedLatencyModel(latency=lat)  # noqa: E731
        elif kind == "gold_replay":
            ctx = QueryGenContext(rollouts=1)
            scripts = {**gold_scripts(env, tasks, seed, ctx), **gold_scripts(env, warm_n, warm_seed, ctx)}
            make = lambda lat: GoldReplayModel(latency=lat, scripts=scripts)  # noqa: E731
        else:
            raise ValueError(f"unknown model kind {kind!r}; known: text, gold_replay")
        for how in workers:
            if how not in ("threads", "processes"):
                raise ValueError(f"unknown worker kind {how!r}; known: threads, processes")
            for c in levels:
                n_workers = min(c, os.cpu_count() or 1) if how == "processes" else 0
                # Warm up: imports, environments, sampler, pooled sessions. Worker processes each build
                # their own (~1 s of CPU once per process); a slow model keeps the slots in flight long
                # enough that every worker gets its share, so none of them starts cold inside the run.
                graph.invoke({"envs": [env], "n": warm_n if n_workers else 2, "seed": warm_seed},
                             context=QueryGenContext(rollouts=1, chat_models={"rollout": make(0.25 if n_workers else 0.0)},
                                                     workers=n_workers),
                             config={"max_concurrency": c})
                key = f"{kind}@{c}" + ("/processes" if n_workers else "")
                runs = sorted((_run(graph, make(latency), env, tasks, seed, c, latency, n_workers)
                               for _ in range(repeats)), key=lambda r: r["efficiency"])
                # the median run, and the spread: one run on a shared machine moves by a few points
                results[key] = {**runs[len(runs) // 2], "runs": len(runs),
                                "efficiency_min": runs[0]["efficiency"], "efficiency_max": runs[-1]["efficiency"]}
                shutdown_workers()  # each level warms its own pool; an idle one would only hold memory
    return results
