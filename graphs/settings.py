"""Graph Contexts: checked up front, and drawn as forms by Studio.

A Context is a dataclass whose fields carry a ``description`` and optional bounds (``ge``, ``gt``,
``le``) in their metadata. ``check_fields`` (called by its ``__post_init__``) checks every value
against its annotation and bounds; ``context_from`` turns what a caller passed (nothing, a mapping
from Studio, the SDK or ``graph.invoke(context={...})``, or the dataclass) into a checked instance,
naming an unknown key's closest match. ``form_schema`` is the TypedDict (typing_extensions, so
``langgraph dev`` can read it on Python < 3.12) the graph declares as its ``context_schema``:
LangGraph then hands nodes the mapping as given, and ``context_from`` checks it, instead of
LangGraph calling the dataclass with it (a bare TypeError for a misspelled key).

Errors are ``ContextError`` (a ValueError: a LangGraph server shows the message to the client).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import threading
import types
import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import Field
from typing_extensions import TypedDict

C = TypeVar("C")


class ContextError(ValueError):
    """A graph Context with an unknown key or a bad value."""


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit ``hint`` (None when it does)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(value, a) for a in args if a is not type(None)]
        return None if None in problems else problems[0]
    if origin is Literal:
        return None if value in args else f"must be one of {', '.join(map(repr, args))}"
    if hint is Any:
        return None
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            return "must be an object (a mapping)"
        key_type = args[0] if args else Any
        if key_type is str and not all(isinstance(k, str) for k in value):
            return "must have string keys"
        return None
    return None


def _bound_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    if "ge" in meta and value < meta["ge"]:
        return f"must be at least {meta['ge']}"
    if "gt" in meta and value <= meta["gt"]:
        return f"must be more than {meta['gt']}"
    if "le" in meta and value > meta["le"]:
        return f"must be at most {meta['le']}"
    return None


def check_fields(obj: Any) -> None:
    """Every field of the dataclass ``obj`` against its annotation and bounds (ContextError)."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        problem = _type_problem(value, hints[f.name])
        if problem is None and isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = _bound_problem(value, f.metadata)
        if problem:
            raise ContextError(f"context key {f.name!r} {problem}, got {value!r}")


def _unknown_key(key: Any, known: list[str]) -> ContextError:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f", did you mean {close[0]!r}" if close else f" (known keys: {', '.join(known)})"
    return ContextError(f"unknown context key {key!r}{hint}")


_converted: dict[int, tuple[Mapping, Any]] = {}   # a run's context mapping -> its instance (nodes ask often)
_converted_lock = threading.Lock()


def context_from(value: Any, cls: type[C]) -> C:
    """A checked ``cls`` instance from None (the defaults), a mapping, or an instance."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ContextError(f"the context must be a mapping or a {cls.__name__}, got {type(value).__name__}")
    with _converted_lock:
        hit = _converted.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    known = [f.name for f in dataclasses.fields(cls)]
    for key in value:
        if key not in known:
            raise _unknown_key(key, known)
    instance = cls(**value)
    with _converted_lock:
        if len(_converted) > 64:
            _converted.clear()
        _converted[id(value)] = (value, instance)
    return instance


def form_schema(cls: type) -> type:
    """The TypedDict Studio draws the Context form from: every field optional, with its description,
    default and bounds (from the dataclass, the one place they are written)."""
    hints = _hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        extra = {}
        if f.default is not dataclasses.MISSING and isinstance(f.default, (str, int, float, bool, type(None))):
            extra["default"] = f.default
        bounds = {k: f.metadata[k] for k in ("ge", "gt", "le") if k in f.metadata}
        fields[f.name] = Annotated[hints[f.name], Field(description=f.metadata.get("description"),
                                                        json_schema_extra=extra or None, **bounds)]
    schema = TypedDict(f"{cls.__name__}Form", fields, total=False)
    schema.__module__ = cls.__module__
    schema.__doc__ = cls.__doc__
    return schema


def check_chat_models(models: Mapping[str, Any]) -> None:
    """An injected rollout model must call tools: say so here, not deep inside a rollout."""
    rollout = models.get("rollout")
    if rollout is None:
        return
    bind = getattr(type(rollout), "bind_tools", None)
    try:
        from langchain_core.language_models import BaseChatModel
        unimplemented = bind is BaseChatModel.bind_tools
    except ImportError:  # pragma: no cover - langchain-core is a dependency
        unimplemented = False
    if bind is None or unimplemented:
        raise ContextError(f"chat_models['rollout'] ({type(rollout).__name__}) has no bind_tools: the rollout model "
                           "must support tool calling (a LangChain chat model with bind_tools)")


def check_prompts_dir(folder: str) -> None:
    if folder and not Path(folder).is_dir():
        raise ContextError(f"context key 'prompts_dir' must name a folder of prompt templates; {folder!r} is not one")
