"""Rendering with bounds: a template cannot hang a run or fill its memory.

Jinja's sandbox stops templates from reaching Python internals, not from working forever: two
nested ``range(100000)`` loops ran for hours, ``'a' * 10**9`` allocated a gigabyte. ``BoundedSandbox``
adds, per render:

- a deadline and an iteration budget, checked at every loop step and every call a template makes;
- a cap on the rendered text, checked while it streams out;
- a cap on what one operation may build: ``*``, ``**``, ``+``, ``~``, ``%``, ``join`` and every filter,
  global or method argument that asks for a size (``center(10**9)``, ``'%0999999999d'``).

Exceeding one raises ``RenderLimitError``; the registry turns it into a ``PromptError`` that names the
template. These are guards against mistakes in templates, which are configuration, not a boundary
against a hostile author (who could still write slow code within them).
"""
from __future__ import annotations

import contextvars
import functools
import re
import time
from typing import Any, Callable, Iterable

from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT_CHARS = 2_000_000   # whole package files go into code prompts: a few hundred kB at most
MAX_ITERATIONS = 1_000_000     # loop steps and calls of one render
MAX_SECONDS = 5.0              # one render
_TICK_EVERY = 256              # iterations between clock reads
_BIG_WIDTH = re.compile(r"\d{7,}")  # a width or precision in a format string of a million or more


class RenderLimitError(Exception):
    """A render went past one of its bounds."""


class _Budget:
    __slots__ = ("seconds", "deadline", "steps")

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_ITERATIONS:
            raise RenderLimitError(f"more than {MAX_ITERATIONS} loop steps and calls (nested loops?)")
        if self.steps % _TICK_EVERY == 0 and time.monotonic() > self.deadline:
            raise RenderLimitError(f"rendering took more than {self.seconds:g} s (nested loops?)")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("prompt_render_budget", default=None)


def _tick() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick()


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


def _check_ints(args: Iterable[Any], what: str) -> None:
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_OUTPUT_CHARS:
            raise RenderLimitError(f"{what} was given {a}, above the limit of {MAX_OUTPUT_CHARS}")


def _check_format(text: Any, what: str) -> None:
    if isinstance(text, str) and _BIG_WIDTH.search(text):
        raise RenderLimitError(f"{what}: a width or precision of a million or more")


def _bounded_filter(name: str, fn: Callable) -> Callable:
    skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1  # the context, then the filtered value

    @functools.wraps(fn)  # keeps jinja_pass_arg: the filter still gets its context or environment
    def run(*args: Any, **kwargs: Any) -> Any:
        _tick()
        _check_ints([*args[skip:], *kwargs.values()], f"filter {name!r}")
        if name == "format" and args:
            _check_format(next((a for a in args if isinstance(a, str)), None), "filter 'format'")
        if name == "join" and args:
            items = next((a for a in args if isinstance(a, (list, tuple))), None)
            if items is not None and sum(len(str(i)) for i in items) > MAX_OUTPUT_CHARS:
                raise RenderLimitError(f"filter 'join' would build more than {MAX_OUTPUT_CHARS} characters")
        return fn(*args, **kwargs)
    return run


class BoundedSandbox(SandboxedEnvironment):
    """``SandboxedEnvironment`` whose renders are bounded (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, fn) for name, fn in self.filters.items()}
        self.globals.pop("lipsum", None)  # placeholder text has no place in a prompt, and n=10**6 is huge

    # -- loops and concatenation, rewritten in every compiled template
    def _generate(self, source: nodes.Template, name, filename, defer_init: bool = False) -> str:
        for loop in source.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("bounded_iter"), [loop.iter], [], None, None,
                                   lineno=loop.lineno)
        for concat in list(source.find_all(nodes.Concat)):
            concat.nodes = [nodes.Call(nodes.EnvironmentAttribute("bounded_concat"), [nodes.List(concat.nodes)],
                                       [], None, None, lineno=concat.lineno)]
        return super()._generate(source, name, filename, defer_init=defer_init)

    @staticmethod
    def bounded_iter(iterable: Any):
        for item in iterable:
            _tick()
            yield item

    @staticmethod
    def bounded_concat(parts: list[Any]) -> str:
        texts = [str(p) for p in parts]
        if sum(map(len, texts)) > MAX_OUTPUT_CHARS:
            raise RenderLimitError(f"'~' would build more than {MAX_OUTPUT_CHARS} characters")
        return "".join(texts)

    # -- operators and calls
    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            sized, times = (left, right) if _size(left) is not None else (right, left)
            if _size(sized) is not None and isinstance(times, int) and _size(sized) * times > MAX_OUTPUT_CHARS:
                raise RenderLimitError(f"'*' would build {_size(sized) * times} items, above {MAX_OUTPUT_CHARS}")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 \
                    and right * abs(left).bit_length() > 64_000:
                raise RenderLimitError("'**' would build a number of more than 64,000 bits")
        elif operator == "+":
            if _size(left) is not None and _size(right) is not None and _size(left) + _size(right) > MAX_OUTPUT_CHARS:
                raise RenderLimitError(f"'+' would build more than {MAX_OUTPUT_CHARS} items")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, "'%' formatting")
            _check_ints(right if isinstance(right, (tuple, list)) else [right], "'%' formatting")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        _tick()
        _check_ints([*args, *kwargs.values()], f"a call of {getattr(__obj, '__name__', 'a function')}")
        if getattr(__obj, "__name__", None) in ("format", "format_map"):  # the sandbox wraps str.format
            method = getattr(__obj, "__wrapped__", __obj)
            _check_format(getattr(method, "__self__", None), "str.format")
        return super().call(__context, __obj, *args, **kwargs)


def render_bounded(template: Any, variables: dict[str, Any], seconds: float = MAX_SECONDS) -> str:
    """Render a compiled template within the bounds; raises RenderLimitError past one."""
    token = _budget.set(_Budget(seconds))
    try:
        parts, size = [], 0
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise RenderLimitError(f"the rendered prompt passed {MAX_OUTPUT_CHARS} characters")
            parts.append(chunk)
            _tick()
        return "".join(parts)
    finally:
        _budget.reset(token)
