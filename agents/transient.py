"""Transient model failures: retried with backoff, then reported as "not done", never as a verdict.

A 503, a rate limit, a connection reset or a timeout says nothing about the task: the same request
may succeed a second later. Every model call of a step goes through ``call_with_retries`` /
``acall_with_retries`` (tenacity) with its role's ``RetryPolicy`` (``ModelConfig.max_retries``,
``retry_wait``, ``retry_wait_max``): bounded attempts, exponential backoff with jitter, and the
server's ``Retry-After`` when it sends one. What still fails raises ``ModelUnavailableError``; graphs
record such a task as not done (a rerun retries it) instead of rejecting it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class ModelUnavailableError(Exception):
    """The model endpoint kept failing transiently after every retry: try the task again later."""

    transient = True

    def __init__(self, message: str, attempts: int = 0):  # the default lets a pickled one load (worker processes)
        self.attempts = attempts
        super().__init__(message)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4          # attempts after the first
    wait: float = 0.5         # seconds before the first retry; doubles (with jitter) up to wait_max
    wait_max: float = 20.0    # also caps a Retry-After, so a run never stalls for long on one call


def _causes(exc: BaseException):
    seen = 0
    while exc is not None and seen < 8:
        yield exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):  # resets, refused connections, asyncio timeouts
        return True
    for module, names in (("openai", ("APIConnectionError",)), ("httpx", ("TransportError",)),
                          ("httpx2", ("TransportError",)), ("anthropic", ("APIConnectionError",))):
        mod = sys.modules.get(module)  # only a library already imported can have raised its errors
        for name in names:
            cls = getattr(mod, name, None) if mod is not None else None
            if isinstance(cls, type) and isinstance(exc, cls):
                return True
    return False


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request later may succeed: HTTP 408/409/425/429/5xx, a connection
    error or a timeout (here or anywhere in the exception's chain of causes)."""
    for e in _causes(exc):
        if isinstance(e, ModelUnavailableError):
            return True
        status = _status(e)
        if status is not None and (status in TRANSIENT_STATUS or status >= 500):
            return True
        if _is_transport_error(e):
            return True
    return False


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after`` in seconds), if any."""
    for e in _causes(exc):
        headers = getattr(getattr(e, "response", None), "headers", None)
        if not headers:
            continue
        for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            value = headers.get(key)
            try:
                return max(0.0, float(value) * scale) if value is not None else None
            except (TypeError, ValueError):
                continue  # an HTTP date: use our own backoff
    return None


class _Wait:
    """The server's Retry-After when given, else exponential backoff with jitter; never above wait_max."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.backoff = wait_random_exponential(multiplier=policy.wait, max=policy.wait_max)

    def __call__(self, state) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        asked = retry_after(exc) if exc is not None else None
        return min(self.policy.wait_max, asked if asked is not None else self.backoff(state))


def describe(exc: BaseException) -> str:
    status = _status(exc)
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}{': ' + text if text else ''}"


def _kwargs(policy: RetryPolicy) -> dict[str, Any]:
    return {"stop": stop_after_attempt(max(0, policy.retries) + 1), "wait": _Wait(policy),
            "retry": retry_if_exception(_retry_it), "reraise": True}


def _retry_it(exc: BaseException) -> bool:
    return is_transient(exc) and not isinstance(exc, ModelUnavailableError)  # that one was retried already


def _unavailable(exc: Exception, policy: RetryPolicy) -> ModelUnavailableError:
    attempts = max(0, policy.retries) + 1
    return ModelUnavailableError(f"the model endpoint failed {attempts} time(s), last: {describe(exc)}", attempts)


def _replaying(first: Exception, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` whose first call raises ``first`` again: the first attempt, made outside tenacity."""
    made = []

    def again():
        if not made:
            made.append(True)
            raise first
        return fn()
    return again


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy | None = None) -> T:
    """``fn()``, retried while it fails transiently; then ``ModelUnavailableError`` (from the last error).

    The first attempt runs outside tenacity (whose set-up per call, ~0.5 ms, was 8% of a rollout's
    CPU); a failure is handed to the same tenacity loop as its first attempt, so waits, retries and
    errors are what they always were."""
    policy = policy or RetryPolicy()
    try:
        return fn()
    except Exception as exc:
        fn = _replaying(exc, fn)
    try:
        for attempt in Retrying(**_kwargs(policy)):
            with attempt:
                return fn()
    except ModelUnavailableError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise _unavailable(exc, policy) from exc
        raise
    raise AssertionError("unreachable")  # tenacity either returned or raised


def _areplaying(first: Exception, fn: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    made = []

    async def again():
        if not made:
            made.append(True)
            raise first
        return await fn()
    return again


async def acall_with_retries(fn: Callable[[], Awaitable[T]], policy: RetryPolicy | None = None) -> T:
    """``await fn()``, retried while it fails transiently (waits without blocking the loop); the
    first attempt outside tenacity, as in ``call_with_retries``."""
    policy = policy or RetryPolicy()
    try:
        return await fn()
    except Exception as exc:
        fn = _areplaying(exc, fn)
    try:
        async for attempt in AsyncRetrying(**_kwargs(policy)):
            with attempt:
                return await fn()
    except ModelUnavailableError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise _unavailable(exc, policy) from exc
        raise
    raise AssertionError("unreachable")
