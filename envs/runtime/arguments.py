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
_SCALARS = (str, int, float, bool, type(None))


def _where(path: str) -> str:
    if len(path) > 80:
        path = path[:77] + "..."
    return f"argument {path!r}" if path else "the arguments"


def _first_surrogate(text: str) -> int:
    return next(i for i, ch in enumerate(text) if "\ud800" <= ch <= "\udfff")


def _scalar_problem(value: Any, what: str) -> str | None:
    """What is wrong with a scalar; ``what`` names it ("argument 'price'")."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if INT_MIN <= value <= INT_MAX:
            return None
        return (f"{what} is an integer of {value.bit_length()} bits; integers must lie between "
                f"{INT_MIN} and {INT_MAX}")
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{what} is {value}; numbers must be finite"
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            return f"{what} has {len(value)} characters; at most {MAX_STRING_CHARS} are accepted"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{what} holds a lone surrogate at character {_first_surrogate(value)}, which is not Unicode text"
        return None
    return f"{what} is a {type(value).__name__}, not a JSON value"


def argument_problem(arguments: Any) -> str | None:
    """Why ``arguments`` cannot reach a tool, or None. Iterative: any nesting is safe to inspect."""
    stack: list[tuple[Any, str, int]] = [(arguments, "", 0)]
    seen = 0
    while stack:
        value, path, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"the arguments hold more than {MAX_VALUES} values"
        if isinstance(value, _SCALARS):
            problem = _scalar_problem(value, _where(path))
            if problem:
                return problem
            continue
        if depth >= MAX_DEPTH:
            return f"the arguments nest deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"{_where(path)} has a key of type {type(key).__name__}; object keys are strings"
                problem = _scalar_problem(key, f"a name in {_where(path)}")
                if problem:
                    return problem
                stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        else:
            return _scalar_problem(value, _where(path))  # a tuple, bytes, an object: not JSON
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
