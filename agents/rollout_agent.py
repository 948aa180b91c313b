"""Rollout agent: solves a task on its own isolated episode(s).

Role: ``rollout``; prompt: ``rollout_agent/system``. With a model, a tool-calling loop over the
environment's MCP tools (langchain-mcp-adapters, one held session per episode) with step and
token limits. Offline tier: the *oracle*, which replays the gold calls as the assistant and
executes them for real; its messages are labelled as scripted, never as model output.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from envfactory.data.records import Message, ToolCallOut, UserTurn
from envfactory.envs.runtime import Environment, Episode

ORACLE_TIER = "offline:oracle-replay"


@dataclass
class RolloutResult:
    messages: list[Message]
    episodes: dict[str, Episode]
    steps: int = 0
    tokens: int = 0
    stopped: str = "completed"        # completed | step_limit | token_limit | error
    malformed_calls: int = 0
    tier: str = ORACLE_TIER
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        for ep in self.episodes.values():
            ep.close()


def route_tool(envs: dict[str, Environment], tool: str) -> str | None:
    """Which environment owns a tool name (names are unique within a task's tool set)."""
    for name, env in envs.items():
        if tool in env.tools:
            return name
    return None


def oracle_rollout(envs: dict[str, Environment], turns: list[UserTurn], system_prompt: str = "",
                   initial_states: dict[str, bytes] | None = None) -> RolloutResult:
    """Replay the gold calls turn by turn on fresh episodes; tool results are real executions."""
    initial_states = initial_states or {}
    episodes = {n: e.episode(state=initial_states.get(n)) for n, e in envs.items()}
    messages: list[Message] = [Message(role="system", content=system_prompt)] if system_prompt else []
    counter = 0
    for turn in turns:
        messages.append(Message(role="user", content=turn.query))
        results = []
        for call in turn.gold_calls:
            counter += 1
            call_id = f"call_{counter}"
            messages.append(Message(role="assistant", content="",
                                    tool_calls=[ToolCallOut(id=call_id, name=call.name, arguments=call.arguments)]))
            res = episodes[call.env].call(call.name, call.arguments)
            messages.append(Message(role="tool", tool_call_id=call_id, name=call.name, content=res.text))
            results.append((call.name, res))
        messages.append(Message(role="assistant", content=_summary(results)))
    return RolloutResult(messages=messages, episodes=episodes, steps=counter)


def _summary(results: list[tuple[str, Any]]) -> str:
    """A plain closing message for the oracle (scripted; says what was done)."""
    if not results:
        return "There was nothing to do for that request."
    parts = []
    for name, res in results:
        if res.ok:
            parts.append(f"{name.replace('_', ' ')} succeeded")
        else:
            parts.append(f"{name.replace('_', ' ')} failed: {res.error}")
    return "Done. " + "; ".join(parts) + "."


def tool_result_text(result) -> str:
    return result.text if result.ok else f"Error: {result.error}"


def parse_arguments(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Model tool-call arguments as a dict, or the reason they are malformed."""
    if isinstance(raw, dict):
        return raw, None
    if isinstance(raw, str):
        try:
            value = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return None, f"arguments are not valid JSON: {exc.msg}"
        return (value, None) if isinstance(value, dict) else (None, "arguments must be a JSON object")
    return None, f"arguments of type {type(raw).__name__} are not a JSON object"
