"""OpenAI chat format (OpenAI fine-tuning, TRL SFTTrainer, Hugging Face chat templates):
``{"messages": [...], "tools": [...]}`` (the JSONL export adds ``metadata``: tiers, models, prompts).

Tool-call arguments are JSON strings by default, as OpenAI's fine-tuning format requires; the Qwen3
template TRL uses emits a string verbatim and runs a dict through ``tojson``, so both render the same
(tests/test_exports.py). ``arguments_as="dict"`` gives objects for templates that only take dicts."""
from __future__ import annotations

import json
from typing import Any, Literal

from envfactory.data.records import TrajectoryRecord


def to_openai(record: TrajectoryRecord, arguments_as: Literal["dict", "string"] = "string") -> list[dict[str, Any]]:
    messages = []
    for m in record.messages:
        out: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments if arguments_as == "dict"
                                               else json.dumps(c.arguments, ensure_ascii=False)}} for c in m.tool_calls]
        if m.role == "tool":
            out["tool_call_id"], out["name"] = m.tool_call_id, m.name
        messages.append(out)
    return [{"messages": messages, "tools": record.tools}]


def check_openai(row: dict[str, Any]) -> list[str]:
    problems = []
    tool_names = {t.get("function", {}).get("name") for t in row.get("tools", [])}
    pending: set[str] = set()
    for i, m in enumerate(row.get("messages", [])):
        role = m.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            problems.append(f"message {i}: unknown role {role!r}")
        if role == "system" and i != 0:
            problems.append(f"message {i}: a system message must come first")
        for c in m.get("tool_calls", []) or []:
            name = c.get("function", {}).get("name")
            if name not in tool_names:
                problems.append(f"message {i}: call of {name!r}, which is not among the record's tools")
            arguments = c.get("function", {}).get("arguments")
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    arguments = None
            if not isinstance(arguments, dict):
                problems.append(f"message {i}: arguments of {name!r} must be a JSON object (or its JSON text)")
            pending.add(c.get("id"))
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                problems.append(f"message {i}: tool result for unknown call {m.get('tool_call_id')!r}")
            pending.discard(m.get("tool_call_id"))
        elif role in ("user", "assistant") and pending and not m.get("tool_calls"):
            problems.append(f"message {i}: {role} message while calls {sorted(pending)} have no result")
    if not row.get("messages") or row["messages"][-1].get("role") != "assistant":
        problems.append("the conversation must end with an assistant message")
    return problems
