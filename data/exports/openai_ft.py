"""OpenAI's fine-tuning format for chat models with tools: one ``{"messages", "tools"}`` object per line,
written exactly as OpenAI's fine-tuning documentation describes it, and a checker of those rules.

The rules (OpenAI's "Fine-tuning" guide, chat format with function calling, and its data-format cookbook):
- each line is an object with ``messages`` (a non-empty list) and optionally ``tools`` and
  ``parallel_tool_calls``; nothing else;
- roles are ``system``, ``developer``, ``user``, ``assistant`` and ``tool``; each message has only the keys
  its role allows: ``role``, ``content`` and ``name`` for system/developer/user; ``role``, ``content``,
  ``name``, ``tool_calls`` and ``weight`` (0 or 1) for assistant; ``role``, ``content`` and ``tool_call_id``
  for tool (no ``name``);
- ``content`` is a string, except an assistant message with ``tool_calls``, whose content may be absent;
- a tool call is ``{"id", "type": "function", "function": {"name", "arguments"}}`` with ``arguments`` a
  string holding a JSON object, and a name among the line's tools;
- every tool message answers a call made before it (``tool_call_id``), and every call gets an answer;
- each line has at least one assistant message (OpenAI trains on assistant messages only);
- a tool is ``{"type": "function", "function": {"name", "description", "parameters"}}`` with a name of at
  most 64 letters, digits, ``_`` or ``-`` and ``parameters`` a JSON Schema object.
"""
from __future__ import annotations

import json
import re
from typing import Any

from envfactory.data.records import TrajectoryRecord

ROLE_KEYS = {"system": {"role", "content", "name"}, "developer": {"role", "content", "name"},
             "user": {"role", "content", "name"},
             "assistant": {"role", "content", "name", "tool_calls", "weight"},
             "tool": {"role", "content", "tool_call_id"}}
LINE_KEYS = {"messages", "tools", "parallel_tool_calls"}
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def to_openai_ft(record: TrajectoryRecord) -> list[dict[str, Any]]:
    """The record as one fine-tuning line: arguments as JSON strings, tool messages without ``name``, an
    assistant message that only calls tools without ``content``."""
    messages = []
    for m in record.messages:
        if m.role == "tool":
            messages.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
            continue
        out: dict[str, Any] = {"role": m.role}
        if m.content or not m.tool_calls:
            out["content"] = m.content
        if m.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                                 for c in m.tool_calls]
        messages.append(out)
    tools = [{"type": "function", "function": {k: t["function"][k] for k in ("name", "description", "parameters")
                                               if k in t.get("function", {})}} for t in record.tools]
    return [{"messages": messages, "tools": tools}]


def _check_tools(tools: Any, problems: list[str]) -> set[str]:
    names: set[str] = set()
    if not isinstance(tools, list):
        problems.append("tools must be a list")
        return names
    for k, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            problems.append(f"tools[{k}] must be {{'type': 'function', 'function': {{...}}}}")
            continue
        if set(tool) - {"type", "function"} or set(fn) - {"name", "description", "parameters", "strict"}:
            problems.append(f"tools[{k}] has keys outside the documented schema: "
                            f"{sorted((set(tool) - {'type', 'function'}) | (set(fn) - {'name', 'description', 'parameters', 'strict'}))}")
        name = fn.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            problems.append(f"tools[{k}]: the name {name!r} must be 1-64 letters, digits, _ or -")
        elif name in names:
            problems.append(f"tools[{k}]: {name!r} is listed twice")
        else:
            names.add(name)
        params = fn.get("parameters")
        if params is not None and (not isinstance(params, dict) or params.get("type") != "object"):
            problems.append(f"tools[{k}] ({name}): parameters must be a JSON Schema object")
    return names


def check_openai_ft(row: dict[str, Any]) -> list[str]:
    """Every way ``row`` breaks OpenAI's documented fine-tuning format (empty when it follows it)."""
    problems: list[str] = []
    if not isinstance(row, dict):
        return ["a line must be a JSON object"]
    if set(row) - LINE_KEYS:
        problems.append(f"unknown top-level keys {sorted(set(row) - LINE_KEYS)} (allowed: {sorted(LINE_KEYS)})")
    names = _check_tools(row.get("tools", []), problems)
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return problems + ["messages must be a non-empty list"]
    pending: set[str] = set()
    seen_ids: set[str] = set()
    assistants = 0
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ROLE_KEYS:
            problems.append(f"messages[{i}]: unknown role {role!r}")
            continue
        extra = set(m) - ROLE_KEYS[role]
        if extra:
            problems.append(f"messages[{i}] ({role}): keys outside the documented schema {sorted(extra)}")
        calls = m.get("tool_calls") or []
        if role == "assistant":
            assistants += 1
            if "content" not in m and not calls:
                problems.append(f"messages[{i}]: an assistant message needs content or tool_calls")
            if "content" in m and not isinstance(m["content"], str) and not (calls and m["content"] is None):
                problems.append(f"messages[{i}]: content must be a string")
            if "weight" in m and m["weight"] not in (0, 1):
                problems.append(f"messages[{i}]: weight must be 0 or 1")
        elif not isinstance(m.get("content"), str):
            problems.append(f"messages[{i}] ({role}): content must be a string")
        if role == "tool":
            call_id = m.get("tool_call_id")
            if call_id not in pending:
                problems.append(f"messages[{i}]: tool result for {call_id!r}, which no earlier call is waiting for")
            pending.discard(call_id)
            continue
        if pending:
            problems.append(f"messages[{i}]: {role} message while calls {sorted(pending)} have no result")
            pending.clear()
        if calls and role != "assistant":
            problems.append(f"messages[{i}]: only assistant messages make tool calls")
        for c in calls if isinstance(calls, list) else []:
            fn = c.get("function") if isinstance(c, dict) else None
            if not isinstance(c, dict) or c.get("type") != "function" or not isinstance(fn, dict) \
                    or not isinstance(c.get("id"), str) or set(c) - {"id", "type", "function"} \
                    or set(fn) - {"name", "arguments"}:
                problems.append(f"messages[{i}]: a tool call must be exactly {{'id', 'type': 'function', "
                                "'function': {'name', 'arguments'}}")
                continue
            if fn.get("name") not in names:
                problems.append(f"messages[{i}]: call of {fn.get('name')!r}, which is not among the line's tools")
            args = fn.get("arguments")
            if not isinstance(args, str):
                problems.append(f"messages[{i}]: arguments of {fn.get('name')!r} must be a JSON string, "
                                f"not {type(args).__name__}")
            else:
                try:
                    if not isinstance(json.loads(args), dict):
                        problems.append(f"messages[{i}]: arguments of {fn.get('name')!r} must encode a JSON object")
                except json.JSONDecodeError:
                    problems.append(f"messages[{i}]: arguments of {fn.get('name')!r} are not valid JSON")
            if c["id"] in seen_ids:
                problems.append(f"messages[{i}]: call id {c['id']!r} is used twice")
            seen_ids.add(c["id"])
            pending.add(c["id"])
    if pending:
        problems.append(f"calls {sorted(pending)} never get a tool result")
    if not assistants:
        problems.append("a line needs at least one assistant message (OpenAI trains on those)")
    return problems
