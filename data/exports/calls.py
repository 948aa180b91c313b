"""Gold call lists as the per-turn rows carry them, read back: trl ``gold_calls`` / ``prefix_calls``, verl
``reward_model.ground_truth`` / ``extra_info.prefix_calls``. One parser, so the trainers' environments, the
reward and the checkers accept the same rows and say the same thing about a bad one."""
from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from envfactory.data.reward import Call

_OPTIONAL = {"arguments": {}, "masked": [], "env": None}   # null reads as absent (Arrow fills missing keys with null)


def _json_type(value: Any) -> str:
    for kind, name in ((type(None), "null"), (bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
                       (dict, "an object"), ((list, tuple), "a list")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def parse_calls(value: Any, what: str) -> list[Call]:
    """``value`` (JSON text, bytes, or the decoded list) as calls. ``what`` names the column in the error.

    Raises ValueError, always of the form "<what> must be a JSON list of calls: <what is wrong>"."""
    def bad(reason: str) -> ValueError:
        return ValueError(f"{what} must be a JSON list of calls: {reason}")

    if isinstance(value, (str, bytes, bytearray)):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise bad(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        except UnicodeDecodeError:
            raise bad("bytes that are not UTF-8 text") from None
    if not isinstance(value, (list, tuple)):
        raise bad(f"got {_json_type(value)}")
    calls = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise bad(f"call {i + 1} is {_json_type(item)}, not an object")
        try:
            calls.append(Call.model_validate({**item, **{k: d for k, d in _OPTIONAL.items() if item.get(k) is None}}))
        except ValidationError as exc:
            first = exc.errors()[0]
            name = f" ({item['name']})" if isinstance(item.get("name"), str) else ""
            where = ".".join(str(p) for p in first["loc"]) or "the call"
            raise bad(f"call {i + 1}{name}: {where}: {first['msg']}") from None
    return calls
