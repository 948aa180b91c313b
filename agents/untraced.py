"""Model turns and tool calls without LangChain's run machinery when nothing observes them.

``BaseChatModel.ainvoke`` and ``BaseTool.ainvoke`` open a callback manager, serialize the inputs
for tracers, start and end a run, and build run ids around every call, even when no callback
handler, tracer or verbose flag is there to receive any of it (~0.6 ms per model turn and per
tool call here, a large part of a rollout's CPU). When ``AsyncCallbackManager.configure`` finds no
handler for the call (the same question LangChain asks: config callbacks, the model's own,
``verbose``, LangSmith tracing and context-var hooks), these helpers call what that machinery
wraps directly: the model's ``_agenerate_with_cache`` (cache, rate limiter, streaming flags,
output version and response metadata included), and a direct tool's episode call. With any
handler present they take the ordinary path, so Studio, LangSmith and callbacks see every run.
Same replies, same tool texts: ``tests/test_direct_tools.py``.
"""
from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableBinding
from langchain_core.runnables.config import ensure_config

_STRUCTURED_FORMAT_KWARGS = ("ls_structured_output_format", "structured_output_format")


def is_traced(model: Any, config: dict | None) -> bool:
    """Whether anything would receive a run of ``model`` (a chat model) under ``config``."""
    cfg = ensure_config(config)
    manager = AsyncCallbackManager.configure(cfg.get("callbacks"), getattr(model, "callbacks", None),
                                             bool(getattr(model, "verbose", False)), cfg.get("tags"),
                                             getattr(model, "tags", None), cfg.get("metadata"),
                                             getattr(model, "metadata", None))
    return bool(manager.handlers or manager.inheritable_handlers)


def _unbind(bound: Any) -> tuple[Any, dict[str, Any]] | None:
    """(chat model, call kwargs) of ``model.bind_tools(...)``'s result or of a bare chat model;
    None for anything else (a chain, a binding with its own config)."""
    from langchain_core.language_models import BaseChatModel
    kwargs: dict[str, Any] = {}
    while isinstance(bound, RunnableBinding):
        if bound.config or bound.config_factories:
            return None
        kwargs = {**bound.kwargs, **kwargs}
        bound = bound.bound
    if not isinstance(bound, BaseChatModel):
        return None
    return bound, kwargs


async def ainvoke_model(bound: Any, messages: list, config: dict | None = None) -> AIMessage:
    """``bound.ainvoke(messages, config=config)``, without the run machinery when nothing traces."""
    unbound = _unbind(bound)
    if unbound is None or is_traced(unbound[0], config):
        return await bound.ainvoke(messages, config=config)
    model, kwargs = unbound
    kwargs = {k: v for k, v in kwargs.items() if k not in _STRUCTURED_FORMAT_KWARGS}  # tracing-only, as agenerate drops them
    stop = kwargs.pop("stop", None)
    prepared = model._convert_input(messages).to_messages()
    try:
        from langchain_core.language_models.chat_models import _normalize_messages
        prepared = _normalize_messages(prepared)
    except ImportError:  # older cores did not normalize
        pass
    result = await model._agenerate_with_cache(prepared, stop=stop, run_manager=None, **kwargs)
    return result.generations[0].message


async def ainvoke_tool(tool: Any, call: dict[str, Any], traced: bool, config: dict | None = None) -> ToolMessage:
    """``tool.ainvoke(call, config)`` (a tool call dict), or, for a direct tool when nothing traces,
    its episode call made into the same ``ToolMessage`` (content text, ``status="error"`` for errors)."""
    from envfactory.envs.mcp.direct import direct_call_of
    direct = None if traced or getattr(tool, "callbacks", None) else direct_call_of(tool)
    if direct is None:
        return await tool.ainvoke(call, config=config)
    text, is_error = await direct(call.get("args") or {})
    return ToolMessage(text, tool_call_id=call["id"], name=tool.name, status="error" if is_error else "success")
