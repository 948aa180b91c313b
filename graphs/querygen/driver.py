"""Running a step body: a step that waits on a model is a generator that yields what it waits for
(``_Ask``, a structured model call; ``_Await``, a rollout coroutine). ``_drive`` answers in the
calling thread (graph nodes, threads mode); ``_adrive`` awaits on an event loop (Ray actors,
many slots per loop). One body per step serves both."""
from __future__ import annotations


from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any




from envfactory.graphs.querygen.resources import _run_async

@dataclass
class _Ask:
    """A structured model call a step waits on (``_drive`` or ``_adrive`` makes it)."""
    model: Any
    messages: list[Any]
    schema: type
    retry: Any = None  # the role's RetryPolicy for failed model calls (agents/transient.py)

@dataclass
class _Await:
    """A coroutine a step waits on (a rollout): on the rollout loop, or awaited where the step runs."""
    make: Callable[[], Awaitable[Any]]

def _drive(steps: Generator[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a step in this thread: its model calls directly, its coroutines on the rollout loop."""
    from envfactory.agents.structured import invoke_structured
    reply, error = None, None
    while True:
        try:
            effect = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        reply, error = None, None
        try:
            reply = (invoke_structured(effect.model, effect.messages, effect.schema, retry=effect.retry) if isinstance(effect, _Ask)
                     else _run_async(effect.make()))
        except Exception as exc:  # handed back to the step, which turns it into a rejection reason
            error = exc

async def _adrive(steps: Generator[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a step on the running event loop: while it waits on a model, other slots run."""
    from envfactory.agents.structured import ainvoke_structured
    reply, error = None, None
    while True:
        try:
            effect = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value
        reply, error = None, None
        try:
            reply = await (ainvoke_structured(effect.model, effect.messages, effect.schema, retry=effect.retry) if isinstance(effect, _Ask)
                           else effect.make())
        except Exception as exc:
            error = exc
