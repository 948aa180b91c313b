"""Token usage and cost per role and model, accumulated over a run (thread-safe)."""
from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage


class UsageTracker(BaseCallbackHandler):
    """A callback handler: pass ``callbacks=[tracker.for_role("query")]`` in a model call's config,
    or call ``record`` yourself with an AIMessage."""

    def __init__(self, prices: dict[str, dict[str, float]] | None = None):
        self.prices = prices or {}
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"input": 0, "output": 0, "calls": 0})

    def for_role(self, role: str) -> "_RoleHandler":
        return _RoleHandler(self, role)

    def record(self, role: str, message: Any, model: str | None = None) -> None:
        usage = getattr(message, "usage_metadata", None) or {}
        name = model or (getattr(message, "response_metadata", {}) or {}).get("model_name") or "unknown"
        with self._lock:
            t = self._totals[(role, name)]
            t["input"] += int(usage.get("input_tokens", 0))
            t["output"] += int(usage.get("output_tokens", 0))
            t["calls"] += 1

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        p = self.prices.get(model, {})
        return (input_tokens * p.get("input", 0.0) + output_tokens * p.get("output", 0.0)) / 1_000_000

    def total_tokens(self) -> int:
        with self._lock:
            return sum(t["input"] + t["output"] for t in self._totals.values())

    def report(self) -> dict[str, Any]:
        with self._lock:
            rows = [{"role": role, "model": model, **t, "cost_usd": self.cost(model, t["input"], t["output"])}
                    for (role, model), t in sorted(self._totals.items())]
        return {"by_role_and_model": rows, "input_tokens": sum(r["input"] for r in rows),
                "output_tokens": sum(r["output"] for r in rows), "calls": sum(r["calls"] for r in rows),
                "cost_usd": sum(r["cost_usd"] for r in rows)}


class _RoleHandler(BaseCallbackHandler):
    def __init__(self, tracker: UsageTracker, role: str):
        self.tracker, self.role = tracker, role

    def on_llm_end(self, response, **kwargs) -> None:
        for generations in response.generations:
            for gen in generations:
                msg = getattr(gen, "message", None)
                if isinstance(msg, AIMessage):
                    self.tracker.record(self.role, msg)
