"""Arguments for imported tools, checked the way the source checks them.

Python does not enforce annotations, so a class called directly accepts ``"5"`` for a parameter
annotated ``int``; an imported tool must accept it too (what the class does with it is the
class's business). What Python itself refuses is refused here with the same meaning: an unknown
argument, a missing required one (``invalid_arguments``). A value that contradicts its
annotation is passed as given and the call's record carries a warning. JSON cannot carry dates,
enums, models, tuples or sets: a value that converts to its annotated type without loss (pydantic,
strict JSON mode) is passed converted, as a Python caller would pass it.
"""
from __future__ import annotations

import copy
import inspect
import json
import typing
from typing import Any, Callable

import pydantic

_JSON_TYPES = (dict, list, str, int, float, bool, type(None))
_PLAIN = {str: (str,), int: (int,), float: (int, float), bool: (bool,), dict: (dict,), list: (list,)}


class ArgumentProblem(ValueError):
    """Arguments Python itself would refuse (``TypeError`` on the call)."""


def callable_parameters(fn: Callable, bound: bool) -> list[inspect.Parameter]:
    """The parameters a caller passes (no ``self``/``cls`` when ``bound`` is false for a method)."""
    params = list(inspect.signature(fn).parameters.values())
    return params if bound else params[1:]


def _plain_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    return type(value) in _JSON_TYPES


class SourceArguments:
    """A tool's parameters as its Python signature declares them."""

    __slots__ = ("name", "params", "required", "var_keyword", "hints", "_adapters")

    def __init__(self, name: str, fn: Callable, bound: bool):
        self.name = name
        params = callable_parameters(fn, bound)
        self.var_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
        self.params = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        self.required = [n for n, p in self.params.items() if p.default is p.empty]
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable annotations: those parameters are untyped
            hints = {}
        self.hints = {n: h for n, h in hints.items() if n in self.params and h is not Any}
        self._adapters: dict[str, pydantic.TypeAdapter | None] = {}

    def _adapter(self, name: str) -> pydantic.TypeAdapter | None:
        if name not in self._adapters:
            try:
                self._adapters[name] = pydantic.TypeAdapter(self.hints[name],
                                                             config=pydantic.ConfigDict(arbitrary_types_allowed=True))
            except Exception:  # a type pydantic cannot validate: values pass as given
                self._adapters[name] = None
        return self._adapters[name]

    def prepare(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Keyword arguments for the call and warnings; raises ArgumentProblem for what Python refuses."""
        unknown = [k for k in arguments if k not in self.params]
        if unknown and not self.var_keyword:
            raise ArgumentProblem(f"unexpected argument {unknown[0]!r} for {self.name} "
                                  f"(parameters: {', '.join(self.params) or 'none'})")
        missing = [n for n in self.required if n not in arguments]
        if missing:
            raise ArgumentProblem(f"missing required argument {missing[0]!r} for {self.name}")
        kwargs, warnings = {}, []
        for key, value in arguments.items():
            kwargs[key], warning = self._value(key, value)
            if warning:
                warnings.append(warning)
        return kwargs, warnings

    def _value(self, key: str, value: Any) -> tuple[Any, str | None]:
        raw = copy.deepcopy(value) if isinstance(value, (dict, list)) else value  # the instance must not keep ours
        hint = self.hints.get(key)
        if hint is None:
            return raw, None
        plain = _PLAIN.get(hint)
        if plain is not None and isinstance(value, plain) and not (isinstance(value, bool) and hint is not bool):
            return raw, None
        adapter = self._adapter(key)
        if adapter is None:
            return raw, None
        try:
            converted = adapter.validate_json(json.dumps(value), strict=True)
        except (pydantic.ValidationError, ValueError, TypeError) as exc:
            msg = exc.errors()[0]["msg"] if isinstance(exc, pydantic.ValidationError) and exc.errors() else str(exc)
            return raw, (f"argument {key!r} of {self.name}: {json.dumps(value)[:60]} does not match its annotation "
                         f"{_type_name(hint)} ({msg}); passed as given, as a direct call would")
        return (raw if _plain_json(converted) else converted), None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
