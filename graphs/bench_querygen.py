"""QueryGen throughput with a model of fixed latency, against the ideal for the concurrency.

The rollout model answers every request after ``latency`` seconds (a scripted model, so the
figure measures the graph's parallelism, not a server). Ideal wall time = the sum of every task's
sequential model time divided by the concurrency; efficiency = ideal / measured."""
from __future__ import annotations

import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from .querygen import QueryGenContext, make_graph


class FixedLatencyModel(BaseChatModel):
    latency: float = 0.05
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "fixed-latency"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        time.sleep(self.latency)
        self.calls += 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage("I have nothing to add."))])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        import asyncio
        await asyncio.sleep(self.latency)
        self.calls += 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage("I have nothing to add."))])


def bench_querygen(tasks: int = 64, concurrency: int = 32, latency: float = 0.05, env: str = "library") -> dict[str, Any]:
    graph = make_graph()
    warm = FixedLatencyModel(latency=0.0)
    graph.invoke({"envs": [env], "n": 2, "seed": 10_000}, context=QueryGenContext(rollouts=1, chat_models={"rollout": warm}))
    model = FixedLatencyModel(latency=latency)
    ctx = QueryGenContext(rollouts=1, chat_models={"rollout": model})
    start = time.perf_counter()
    out = graph.invoke({"envs": [env], "n": tasks, "seed": 0}, context=ctx, config={"max_concurrency": concurrency})
    measured = time.perf_counter() - start
    processed = len(out["records"])
    ideal = model.calls * latency / concurrency
    return {"tasks": processed, "concurrency": concurrency, "model_calls": model.calls, "latency_s": latency,
            "measured_s": round(measured, 3), "ideal_s": round(ideal, 3), "efficiency": ideal / measured,
            "target_80_percent": ideal / measured >= 0.8}
