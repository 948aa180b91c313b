"""Scripted chat models for notebooks and tests: no endpoint, no network.

``ScriptedChatModel`` replays a script of replies, supports ``bind_tools`` and structured output,
records every request, reports usage, and can add latency; ``tool_call_message`` builds a reply that
calls a tool, ``malformed`` one a real model sometimes gives. Output of a scripted model is labelled
by its model name ("scripted"), never presented as a real model's::

    from envfactory.agents.testing import ScriptedChatModel, tool_call_message
    model = ScriptedChatModel(script=[tool_call_message("get_book", {"book_id": 1}), "Here it is."])
"""
from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Sequence

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

_ids = itertools.count(1)


def tool_call_message(name: str, args: dict[str, Any], content: str = "", call_id: str | None = None) -> AIMessage:
    return AIMessage(content=content, tool_calls=[{"name": name, "args": args, "id": call_id or f"call_{next(_ids)}",
                                                   "type": "tool_call"}])


def malformed(kind: str = "json") -> AIMessage:
    """Replies a real model sometimes gives: broken JSON, the wrong shape, or an unknown tool."""
    if kind == "json":
        return AIMessage(content='{"queries": ["unterminated')
    if kind == "shape":
        return AIMessage(content='{"answer": 42}')
    if kind == "unknown_tool":
        return tool_call_message("delete_everything", {})
    raise ValueError(f"unknown malformed kind {kind!r}")


class ScriptedChatModel(BaseChatModel):
    """Replays ``script`` in order. An item is an AIMessage, a string, or a callable that receives
    the request messages and returns one of those (to react to what it is asked)."""

    script: list[Any] = Field(default_factory=list)
    latency: float = 0.0
    model_name: str = "scripted"
    _position: int = PrivateAttr(default=0)
    requests: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[Any] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> "ScriptedChatModel":
        self.bound_tools = list(tools)
        return self

    @property
    def remaining(self) -> int:
        return len(self.script) - self._position

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        self.requests.append(list(messages))
        if self._position >= len(self.script):
            raise RuntimeError(f"ScriptedChatModel ran out of script after {len(self.script)} replies "
                               f"(last request: {messages[-1].content!r:.200})")
        item = self.script[self._position]
        self._position += 1
        if callable(item) and not isinstance(item, BaseMessage):
            item = item(messages)
        msg = AIMessage(content=item) if isinstance(item, str) else item.model_copy()
        tokens_in = sum(len(str(m.content).split()) for m in messages)
        msg.usage_metadata = {"input_tokens": tokens_in, "output_tokens": max(1, len(str(msg.content).split())),
                              "total_tokens": tokens_in + max(1, len(str(msg.content).split()))}
        msg.response_metadata = {**msg.response_metadata, "model_name": self.model_name}
        return msg

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        if self.latency:
            time.sleep(self.latency)
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    async def _agenerate(self, messages: list[BaseMessage], stop=None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])
