"""LlamaFactory formats.

sharegpt: ``conversations`` alternate strictly (even positions human/observation, odd positions
gpt/function_call, an even count); a function_call value is a JSON object ``{"name", "arguments"}``
(a list for parallel calls) with arguments as an object; parallel results share one observation
joined by ``\\n</tool_response>\\n<tool_response>\\n``; ``tools`` is a JSON-encoded string. A record that
breaks these rules is skipped by LlamaFactory without an error, so ours are checked before writing.

alpaca (parity with the EnvFactory release): one sample per step with all earlier steps as history;
Qwen3-style text: calls as ``<tool_call>`` blocks, results as ``<tool_response>`` blocks, tools in the
system text.
"""
from __future__ import annotations

import json
from typing import Any

from envfactory.data.records import Message, TrajectoryRecord

JOIN_RESULTS = "\n</tool_response>\n<tool_response>\n"


def _call_value(message: Message) -> str:
    calls = [{"name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    return json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)


def to_sharegpt(record: TrajectoryRecord) -> list[dict[str, Any]]:
    conversations: list[dict[str, str]] = []
    pending_results: list[str] = []

    def flush():
        if pending_results:
            conversations.append({"from": "observation", "value": JOIN_RESULTS.join(pending_results)})
            pending_results.clear()

    for m in record.messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            pending_results.append(m.content)
            continue
        flush()
        if m.role == "user":
            conversations.append({"from": "human", "value": m.content})
        elif m.tool_calls:
            # text said alongside calls cannot sit before a function_call turn in sharegpt; the call carries the step
            conversations.append({"from": "function_call", "value": _call_value(m)})
        else:
            conversations.append({"from": "gpt", "value": m.content})
    flush()
    while conversations and conversations[-1]["from"] in ("human", "observation"):
        conversations.pop()  # a record must end on the assistant's side
    tools = [t["function"] for t in record.tools]
    return [{"system": record.system_prompt, "tools": json.dumps(tools, ensure_ascii=False), "conversations": conversations}]


def check_sharegpt(row: dict[str, Any]) -> list[str]:
    problems = []
    try:
        tools = json.loads(row.get("tools", ""))
        if not isinstance(tools, list):
            problems.append("tools must be a JSON-encoded list")
            tools = []
    except (TypeError, json.JSONDecodeError):
        problems.append("tools must be a JSON-encoded string")
        tools = []
    names = {t.get("name") for t in tools}
    conv = row.get("conversations", [])
    if not conv or len(conv) % 2:
        problems.append(f"conversations must have an even, non-zero number of turns (has {len(conv)})")
    for i, turn in enumerate(conv):
        allowed = ("human", "observation") if i % 2 == 0 else ("gpt", "function_call")
        if turn.get("from") not in allowed:
            problems.append(f"turn {i}: {turn.get('from')!r} where {' or '.join(allowed)} must stand")
        if turn.get("from") == "function_call":
            try:
                value = json.loads(turn["value"])
            except json.JSONDecodeError:
                problems.append(f"turn {i}: function_call value is not JSON")
                continue
            for call in value if isinstance(value, list) else [value]:
                if not isinstance(call, dict) or not isinstance(call.get("arguments"), dict):
                    problems.append(f"turn {i}: each call needs a name and arguments as an object")
                elif call.get("name") not in names:
                    problems.append(f"turn {i}: call of {call.get('name')!r}, which is not in tools")
    return problems


def dataset_info_entry(name: str, file_name: str, formatting: str) -> dict[str, Any]:
    if formatting == "sharegpt":
        return {name: {"file_name": file_name, "formatting": "sharegpt",
                       "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}}
    return {name: {"file_name": file_name, "formatting": "alpaca",
                   "columns": {"prompt": "instruction", "query": "input", "response": "output", "history": "history", "system": "system"}}}


def _system_with_tools(record: TrajectoryRecord) -> str:
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in record.tools)
    return (f"{record.system_prompt}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            f"<tools>\n{lines}\n</tools>\n\nFor each function call, return a json object with function name and arguments "
            f"within <tool_call></tool_call> XML tags.")


def to_alpaca(record: TrajectoryRecord) -> list[dict[str, Any]]:
    """One sample per assistant step; failed calls stay in history but are not targets."""
    system = _system_with_tools(record)
    steps: list[tuple[str, str, bool]] = []   # (input text, output text, is a training target)
    pending_input: list[str] = []
    msgs = [m for m in record.messages if m.role != "system"]
    for i, m in enumerate(msgs):
        if m.role == "user":
            pending_input.append(m.content)
        elif m.role == "tool":
            pending_input.append(f"<tool_response>\n{m.content}\n</tool_response>")
        else:
            if m.tool_calls:
                output = "".join(f"<tool_call>\n{json.dumps({'name': c.name, 'arguments': c.arguments}, ensure_ascii=False)}\n</tool_call>\n"
                                 for c in m.tool_calls)
                results = [r for r in msgs[i + 1:i + 1 + len(m.tool_calls)] if r.role == "tool"]
                target = not any(r.content.startswith("Error") for r in results)  # errors are the tool's verdict, not a substring search
            else:
                output, target = m.content, True
            steps.append(("\n".join(pending_input), output, target))
            pending_input = []
    samples = []
    for n, (inp, out, target) in enumerate(steps):
        if target:
            samples.append({"instruction": inp, "input": "", "output": out, "system": system,
                            "history": [[a, b] for a, b, _ in steps[:n]]})
    return samples


def check_alpaca(row: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("instruction", "output", "system", "history"):
        if key not in row:
            problems.append(f"missing {key}")
    if not str(row.get("output", "")).strip():
        problems.append("empty output")
    for k, pair in enumerate(row.get("history", [])):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            problems.append(f"history[{k}] must be a [prompt, response] pair of strings")
    for block in str(row.get("output", "")).split("<tool_call>\n")[1:]:
        body = block.split("\n</tool_call>")[0]
        try:
            call = json.loads(body)
        except json.JSONDecodeError:
            problems.append("a <tool_call> block is not JSON")
            continue
        if not isinstance(call.get("arguments"), dict):
            problems.append("a <tool_call> needs arguments as an object")
    return problems
