"""Rollout agent: solves a task on its own isolated episode(s).

Role: ``rollout``; prompt: ``rollout_agent/system``. With a model, a tool-calling loop over the
environment's MCP tools (langchain-mcp-adapters, one held session per episode) with step and
token limits. Offline tier: ``agents/solver.py``, a rule-based solver that reads only the
conversation, the schemas and the outputs (``offline:rule-solver``). The *oracle* here, which replays
the gold calls, is kept for benchmarks of the rollout machinery only: it never makes training data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from envfactory.data.records import Message, ToolCallOut, UserTurn
from envfactory.envs.runtime.environment import Environment, Episode

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
    # the state after each user turn: env -> StateDiff (as a dict) from the initial state, so a viewer shows
    # each turn's changes without replaying anything (cost: O(changed rows) per turn)
    turn_diffs: list[dict[str, dict[str, Any]]] = field(default_factory=list)

    def close(self) -> None:
        for ep in self.episodes.values():
            ep.close()


def turn_diff(episodes: dict[str, Episode]) -> dict[str, dict[str, Any]]:
    """Every environment's changes so far, from its episode's initial state."""
    return {name: ep.diff().model_dump(mode="json") for name, ep in episodes.items()}


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
    counter, diffs = 0, []
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
        diffs.append(turn_diff(episodes))
    return RolloutResult(messages=messages, episodes=episodes, steps=counter, turn_diffs=diffs)


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


MODEL_TIER = "model"
STOP = "###STOP###"


async def model_rollout(envs: dict[str, Environment], turns: list[UserTurn], model, system_prompt: str,
                        max_steps: int = 16, max_tokens: int = 20_000, simulator=None, config: dict | None = None,
                        sessions: dict | None = None, inline_episodes: bool = False, retry=None) -> RolloutResult:
    """A tool-calling agent over each environment's tools, every environment on its own fresh
    episode. ``sessions`` (env name -> a pool on this event loop with ``tools_for(episode)``:
    ``envfactory.envs.mcp.DirectToolPool``, tools that call the episode in this process, or
    ``EpisodeSessionPool``, pooled in-memory MCP sessions) lends this rollout its tools; an
    environment without one gets a fresh in-memory MCP server and session for the rollout.
    With nothing tracing (no callbacks, no LangSmith), model turns and direct tool calls skip
    LangChain's run machinery (``agents/untraced.py``): same messages, less CPU.

    Without a simulator the user's turns are replayed in order (single-shot requests); with one,
    the simulator answers whenever the agent stops calling tools, and ends the conversation.
    ``retry``: the role's ``RetryPolicy`` for failed model calls (``ModelUnavailableError`` once spent).
    """
    import contextlib

    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    from envfactory.agents.transient import acall_with_retries
    from envfactory.agents.untraced import ainvoke_model, ainvoke_tool, is_traced
    from envfactory.envs.mcp import build_server, episode_tools

    import asyncio

    def new_episodes() -> dict[str, Any]:
        return {name: env.episode() for name, env in envs.items()}

    # New episodes load SQLite state: off the event loop, like every tool call (see mcp_bridge),
    # unless the loop is a worker's private one (``inline_episodes``), where a thread hop costs more.
    episodes = new_episodes() if inline_episodes else await asyncio.to_thread(new_episodes)
    async with contextlib.AsyncExitStack() as stack:
        tools = {}
        for name, env in envs.items():
            if sessions is not None and name in sessions:
                env_tools = await stack.enter_async_context(sessions[name].tools_for(episodes[name]))
            else:
                env_tools, _ = await stack.enter_async_context(
                    episode_tools(build_server(env, episode=episodes[name], inline_calls=inline_episodes)))
            tools.update({t.name: t for t in env_tools})
        bound = model.bind_tools(list(tools.values()))
        traced = is_traced(model, config)
        history = [SystemMessage(system_prompt), HumanMessage(turns[0].query)]
        record: list[Message] = [Message(role="system", content=system_prompt), Message(role="user", content=turns[0].query)]
        steps = tokens = malformed = 0
        next_turn, stopped, diffs = 1, "completed", []
        while True:
            if steps >= max_steps:
                stopped = "step_limit"
                break
            reply: AIMessage = await acall_with_retries(
                (lambda: bound.ainvoke(history, config=config)) if traced else (lambda: ainvoke_model(bound, history, config)),
                retry)
            steps += 1
            tokens += (reply.usage_metadata or {}).get("total_tokens", 0)
            history.append(reply)
            calls = [ToolCallOut(id=c.get("id") or f"call_{steps}_{i}", name=c["name"], arguments=c.get("args") or {})
                     for i, c in enumerate(reply.tool_calls or [])]
            record.append(Message(role="assistant", content=_text(reply.content), tool_calls=calls))
            for call, raw in zip(calls, reply.tool_calls or []):
                tool = tools.get(call.name)
                if tool is None:
                    malformed += 1  # never reaches an environment, so the reward counts it here
                    text = f"Error: unknown tool {call.name!r}; available tools: {', '.join(sorted(tools))}"
                else:
                    msg = await ainvoke_tool(tool, {"type": "tool_call", "id": call.id, "name": call.name, "args": call.arguments},
                                             traced, config)
                    text = _text(msg.content)
                    if getattr(msg, "status", "success") == "error" and not text.startswith("Error"):
                        text = f"Error: {text}"
                history.append(ToolMessage(text, tool_call_id=call.id))
                record.append(Message(role="tool", tool_call_id=call.id, name=call.name, content=text))
            unparsable = reply.invalid_tool_calls or []  # arguments the client could not read as JSON
            for i, bad in enumerate(unparsable):
                malformed += 1  # never reaches an environment: a format error the reward counts, and the model is told
                history.append(ToolMessage(f"Error: the arguments of {bad.get('name') or 'this call'} are not a JSON object; "
                                           f"call it again with valid JSON arguments",
                                           tool_call_id=bad.get("id") or f"call_{steps}_invalid_{i}"))
            if tokens >= max_tokens:
                stopped = "token_limit"
                break
            if calls or unparsable:
                continue
            diffs.append(await asyncio.to_thread(turn_diff, episodes) if not inline_episodes else turn_diff(episodes))
            if simulator is not None:
                answer = await simulator.respond(record, next_turn)
                if answer is None or STOP in answer:
                    break
                next_turn += 1
            elif next_turn < len(turns):
                answer = turns[next_turn].query
                next_turn += 1
            else:
                break
            history.append(HumanMessage(answer))
            record.append(Message(role="user", content=answer))
    return RolloutResult(messages=record, episodes=episodes, steps=steps, tokens=tokens, stopped=stopped,
                         malformed_calls=malformed, tier=MODEL_TIER, turn_diffs=diffs)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)
