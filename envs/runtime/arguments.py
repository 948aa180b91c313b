"""What any tool accepts as arguments, whatever its schema allows.

A JSON Schema ``integer`` has no upper bound, ``number`` admits NaN once Python parsed it, and a
``string`` may hold a lone surrogate or a megabyte. Such values made tools fail inside SQLite with
kind ``internal``, which drops the sample instead of scoring it: an agent could opt out of its
reward. Every call's arguments pass ``argument_problem`` before the schema is checked; what it
finds is the agent's doing, an ``invalid_arguments`` result that scores like any wrong call.
"""
from __future__ import annotations

import json
import math
from typing import Any

INT_MIN, INT_MAX = -2**63, 2**63 - 1  # what SQLite (and most services) store as an integer
MAX_STRING_CHARS = 10_000             # below SQLite's LIKE pattern limit (50,000 bytes) in any encoding
MAX_DEPTH = 32                        # nesting of arrays and objects
MAX_VALUES = 10_000                   # values in all, at every depth


def _where(path: str) -> str:
    if len(path) > 80:
        path = path[:77] + "..."
    return f"argument {path!r}" if path else "the arguments"


def _first_surrogate(text: str) -> int:
    return next(i for i, ch in enumerate(text) if "\ud800" <= ch <= "\udfff")


def _scalar_problem(value: Any) -> str | None:
    """What is wrong with a scalar, as a predicate ("is NaN; ..."), or None. Calls pass this on
    every value of every call: the common types are tested first and nothing is formatted unless wrong."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_STRING_CHARS:
            return f"has {len(value)} characters; at most {MAX_STRING_CHARS} are accepted"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"holds a lone surrogate at character {_first_surrogate(value)}, which is not Unicode text"
        return None
    if kind is int or (isinstance(value, int) and kind is not bool):
        if INT_MIN <= value <= INT_MAX:
            return None
        return f"is an integer of {value.bit_length()} bits; integers must lie between {INT_MIN} and {INT_MAX}"
    if kind is bool or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"is {value}; numbers must be finite"
    if isinstance(value, str):
        return _scalar_problem(str(value))
    return f"is a {kind.__name__}, not a JSON value"


def _plainly_fine(arguments: Any) -> bool:
    """The common case, answered fast: a flat object of ASCII names and plain in-range scalars."""
    if type(arguments) is not dict or len(arguments) > MAX_VALUES:
        return False
    for key, value in arguments.items():
        if type(key) is not str or len(key) > MAX_STRING_CHARS or not key.isascii():
            return False
        kind = type(value)
        if kind is int:
            if not INT_MIN <= value <= INT_MAX:
                return False
        elif kind is str:
            if len(value) > MAX_STRING_CHARS or not value.isascii():
                return False
        elif kind is float:
            if not math.isfinite(value):
                return False
        elif kind is not bool and value is not None:
            return False
    return True


def argument_problem(arguments: Any) -> str | None:
    """Why ``arguments`` cannot reach a tool, or None. Iterative: any nesting is safe to inspect."""
    if _plainly_fine(arguments):
        return None
    stack: list[tuple[Any, str, int]] = [(arguments, "", 0)]
    seen = 0
    while stack:
        value, path, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"the arguments hold more than {MAX_VALUES} values"
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                return f"the arguments nest deeper than {MAX_DEPTH} levels"
            for key, item in value.items():
                if type(key) is not str:
                    return f"{_where(path)} has a key of type {type(key).__name__}; object keys are strings"
                problem = _scalar_problem(key)
                if problem:
                    return f"a name in {_where(path)} {problem}"
                stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            if depth >= MAX_DEPTH:
                return f"the arguments nest deeper than {MAX_DEPTH} levels"
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        else:
            problem = _scalar_problem(value)  # a tuple, bytes or any object is "not a JSON value"
            if problem:
                return f"{_where(path)} {problem}"
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_arguments(text: str) -> Any:
    """JSON text as Python values, refusing what ``json.loads`` would let through or crash on:
    NaN and Infinity (not JSON) and nesting deep enough to exhaust the interpreter's stack.
    Raises ValueError (``json.JSONDecodeError`` for text that is not JSON)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("the JSON nests too deeply") from None


def json_problem(exc: ValueError) -> str:
    """Why ``loads_arguments`` refused a text, for an error message."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)
