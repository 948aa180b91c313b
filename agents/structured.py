"""Structured outputs with bounded retries.

The model is asked for JSON matching a pydantic schema. Output that does not parse or validate is
sent back with the validation error (up to ``max_retries`` times); then the step fails with
``StructuredOutputError``, which callers turn into a rejection with its reason, never a crash.

A failed model call (HTTP 500, a reset connection, a timeout) is retried with the role's
``RetryPolicy`` (agents/transient.py); if it keeps failing, or fails in a way no retry mends, it
also ends in a ``StructuredOutputError``, whose ``transient`` says whether the task should be tried
again later (not done) rather than rejected, and whose ``__cause__`` is the model's error.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from pydantic import BaseModel, ValidationError

from envfactory.agents.transient import RetryPolicy, acall_with_retries, call_with_retries, describe, is_transient

T = TypeVar("T", bound=BaseModel)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


class StructuredOutputError(Exception):
    def __init__(self, schema: str, attempts: list[dict[str, Any]], tokens: int = 0, transient: bool = False):
        self.schema, self.attempts = schema, attempts
        self.tokens = tokens  # spent on the failed attempts: budgets count them too
        self.transient = transient  # the model endpoint failed, not the output: try the task again later
        last = attempts[-1]["error"] if attempts else "no attempt"
        if attempts and attempts[-1].get("call_failed"):
            message = f"no {schema} from the model: {last}"
        else:
            message = f"model output did not match {schema} after {len(attempts)} attempt(s); last error: {last}"
        super().__init__(message)


@dataclass
class StructuredResult(Generic[T]):
    value: T
    attempts: int
    messages: list[AIMessage] = field(default_factory=list)

    @property
    def usage(self) -> dict[str, int]:
        out = {"input_tokens": 0, "output_tokens": 0}
        for m in self.messages:
            for k in out:
                out[k] += (m.usage_metadata or {}).get(k, 0)
        return out


def extract_json(text: str) -> Any:
    """JSON from a reply: the whole text, else a fenced block, else the outermost object."""
    text = text.strip()
    candidates = [text] + _FENCE.findall(text)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for c in candidates:
        try:
            return json.loads(c)
        except json.JSONDecodeError:
            continue
    raise ValueError("the reply holds no JSON object")


def _parse(reply: AIMessage, schema: type[T]) -> T:
    for call in reply.tool_calls or []:
        if call["name"] == schema.__name__:
            return schema.model_validate(call["args"])
    if reply.tool_calls:
        names = ", ".join(c["name"] for c in reply.tool_calls)
        raise ValueError(f"expected a call of {schema.__name__}, got a call of {names}")
    for call in _invalid_calls(reply):
        raise ValueError(f"the arguments of your {call.get('name') or 'tool'} call are not a JSON object "
                         f"({str(call.get('error') or 'unparsable')[:200]})")
    content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
    return schema.model_validate(extract_json(content))


def invoke_structured(model, messages: list[BaseMessage], schema: type[T], max_retries: int = 2,
                      use_tool_calling: bool = True, config: dict | None = None,
                      retry: RetryPolicy | None = None) -> StructuredResult[T]:
    """Ask ``model`` for a ``schema`` instance; retries with the error shown to the model.
    ``retry``: how failed model calls are retried (the role's policy; default ``RetryPolicy()``)."""
    bound, attempts = _attempts(model, messages, schema, max_retries, use_tool_calling)
    history = next(attempts)
    while True:
        try:
            reply = call_with_retries(lambda: bound.invoke(history, config=config), retry)
        except Exception as exc:
            history = attempts.throw(exc)
            continue
        try:
            history = attempts.send(reply)
        except StopIteration as done:
            return done.value


async def ainvoke_structured(model, messages: list[BaseMessage], schema: type[T], max_retries: int = 2,
                             use_tool_calling: bool = True, config: dict | None = None,
                             retry: RetryPolicy | None = None) -> StructuredResult[T]:
    """``invoke_structured`` for an event loop: the model is awaited, the retries are the same."""
    bound, attempts = _attempts(model, messages, schema, max_retries, use_tool_calling)
    history = next(attempts)
    while True:
        try:
            reply = await acall_with_retries(lambda: bound.ainvoke(history, config=config), retry)
        except Exception as exc:
            history = attempts.throw(exc)
            continue
        try:
            history = attempts.send(reply)
        except StopIteration as done:
            return done.value


def _attempts(model, messages: list[BaseMessage], schema: type[T], max_retries: int, use_tool_calling: bool):
    """The bound model, and the retry loop as a generator: it yields the history to send and is sent
    each reply, so the sync and async callers share one loop."""
    bound = model
    if use_tool_calling:
        try:
            bound = model.bind_tools([schema], tool_choice=schema.__name__)
        except (NotImplementedError, TypeError):
            bound = model
    return bound, _retry_loop(list(messages), schema, max_retries)


def _retry_loop(history: list[BaseMessage], schema: type[T], max_retries: int):
    attempts: list[dict[str, Any]] = []
    replies: list[AIMessage] = []

    def failed(**kwargs) -> StructuredOutputError:
        spent = StructuredResult(None, len(attempts), replies).usage  # type: ignore[arg-type]
        return StructuredOutputError(schema.__name__, attempts, spent["input_tokens"] + spent["output_tokens"], **kwargs)

    for _ in range(max_retries + 1):
        try:
            reply = yield history
        except Exception as exc:  # the model call itself failed (after its own retries when transient)
            attempts.append({"raw": None, "error": f"the model call failed: {describe(exc)}", "call_failed": True})
            raise failed(transient=is_transient(exc)) from exc
        replies.append(reply)
        try:
            return StructuredResult(_parse(reply, schema), len(attempts) + 1, replies)
        except (ValidationError, ValueError, RecursionError) as exc:
            error = _describe(exc)
            pending = reply.tool_calls or _invalid_calls(reply)
            attempts.append({"raw": reply.content if not pending else pending, "error": error})
            feedback = (f"Your reply did not match the required {schema.__name__} format: {error}\n"
                        f"Reply again with the corrected {schema.__name__}.")
            if pending:  # a tool call (even an unparsable one) must be answered by tool messages first
                history = history + [reply] + [ToolMessage(feedback, tool_call_id=c.get("id") or f"call_{i}")
                                               for i, c in enumerate(pending)]
            else:
                history = history + [reply, HumanMessage(feedback)]
    raise failed()


def _invalid_calls(reply: AIMessage) -> list[dict[str, Any]]:
    """Tool calls whose arguments the client could not parse (LangChain keeps them apart)."""
    return [dict(c) for c in getattr(reply, "invalid_tool_calls", None) or []]


def _describe(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "the reply nests too deeply to parse"
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
    return str(exc)
