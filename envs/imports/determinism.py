"""Seeded ``random``, ``uuid`` and clock for imported code, per episode.

Imported classes call ``uuid.uuid4()``, ``random.choice`` or ``datetime.now()`` in their writes, so
the same calls on two fresh episodes would give different states. After their modules run, the
names they bound to those modules and functions are replaced by stand-ins that answer from the
calling thread's active episode (its own ``random.Random`` and a clock at the manifest's time,
one second later per call made), and from the real modules otherwise. Nothing process-wide is
patched: other code (ours included) keeps the real ``uuid`` and ``random``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import random as _random
import threading
import time as _time
import types
import uuid as _uuid
from typing import Any, Iterator

_local = threading.local()
# The real functions, kept before ``install_process_stand_ins`` replaces them in their modules.
_real_uuid4, _real_uuid1, _real_time, _real_time_ns = _uuid.uuid4, _uuid.uuid1, _time.time, _time.time_ns


class Determinism:
    """One episode's sources of chance and time."""

    __slots__ = ("seed", "random", "start", "calls")

    def __init__(self, seed: str, start: _dt.datetime):
        self.seed, self.start, self.calls = seed, start, 0
        self.random = _random.Random(seed)

    def reseed(self) -> None:
        self.random.seed(self.seed)
        self.calls = 0

    def now(self) -> _dt.datetime:
        """Aware UTC time: the manifest's clock plus one second per call made on the episode."""
        return self.start + _dt.timedelta(seconds=self.calls)

    def state(self) -> tuple:
        return self.random.getstate(), self.calls

    def set_state(self, state: tuple) -> None:
        self.random.setstate(state[0])
        self.calls = state[1]


def current() -> Determinism | None:
    return getattr(_local, "det", None)


@contextlib.contextmanager
def active(det: Determinism) -> Iterator[None]:
    previous, _local.det = current(), det
    try:
        yield
    finally:
        _local.det = previous


# ---------------------------------------------------------------- stand-ins

class SeededRandom(_random.Random):
    """``random.Random()`` without a seed, inside an episode: seeded from the episode."""

    def __init__(self, x: Any = None):
        det = current()
        super().__init__(det.random.getrandbits(64) if x is None and det is not None else x)


def _uuid4() -> _uuid.UUID:
    det = current()
    return _uuid.UUID(int=det.random.getrandbits(128), version=4) if det is not None else _real_uuid4()


def _uuid1(node: int | None = None, clock_seq: int | None = None) -> _uuid.UUID:
    det = current()
    if det is None:
        return _real_uuid1(node, clock_seq)
    return _uuid.UUID(int=det.random.getrandbits(128), version=1)


class _DatetimeMeta(type):
    # Values made outside (pydantic, strptime of the real class) are still datetimes to the code.
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls.__mro__[1])

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls.__mro__[1])


class FrozenDatetime(_dt.datetime, metaclass=_DatetimeMeta):
    @classmethod
    def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:
        det = current()
        if det is None:
            return _dt.datetime.now(tz)
        now = det.now()
        return now.astimezone(tz) if tz is not None else now.replace(tzinfo=None)

    @classmethod
    def utcnow(cls) -> _dt.datetime:
        det = current()
        return det.now().replace(tzinfo=None) if det is not None else _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)

    @classmethod
    def today(cls) -> _dt.datetime:
        return cls.now()


class FrozenDate(_dt.date, metaclass=_DatetimeMeta):
    @classmethod
    def today(cls) -> _dt.date:
        det = current()
        return det.now().date() if det is not None else _dt.date.today()


def _time_time() -> float:
    det = current()
    return det.now().timestamp() if det is not None else _real_time()


def _time_ns() -> int:
    det = current()
    return int(det.now().timestamp()) * 1_000_000_000 if det is not None else _real_time_ns()


class _ModuleProxy(types.ModuleType):
    """A module that answers some names itself and the rest from the real module."""

    def __init__(self, real: types.ModuleType, own: dict[str, Any]):
        super().__init__(real.__name__, real.__doc__)
        self.__dict__.update(own)
        object.__setattr__(self, "_real", real)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _RandomProxy(_ModuleProxy):
    def __getattr__(self, name: str) -> Any:
        det = current()
        if det is not None and not name.startswith("_") and callable(getattr(det.random, name, None)):
            return getattr(det.random, name)
        return getattr(_random, name)


def _random_function(name: str):
    real = getattr(_random, name)

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        det = current()
        return getattr(det.random, name)(*args, **kwargs) if det is not None else real(*args, **kwargs)
    stand_in.__name__ = stand_in.__qualname__ = name
    return stand_in


_RANDOM = _RandomProxy(_random, {"Random": SeededRandom})
_UUID = _ModuleProxy(_uuid, {"uuid4": _uuid4, "uuid1": _uuid1})
_DATETIME = _ModuleProxy(_dt, {"datetime": FrozenDatetime, "date": FrozenDate})
_TIME = _ModuleProxy(_time, {"time": _time_time, "time_ns": _time_ns})
_FUNCTIONS: dict[int, Any] = {id(_uuid.uuid4): _uuid4, id(_uuid.uuid1): _uuid1, id(_dt.datetime): FrozenDatetime,
                              id(_dt.date): FrozenDate, id(_time.time): _time_time, id(_time.time_ns): _time_ns,
                              id(_random.Random): SeededRandom}
_MODULES = {id(_random): _RANDOM, id(_uuid): _UUID, id(_dt): _DATETIME, id(_time): _TIME}
_RANDOM_FUNCTIONS = {id(getattr(_random, n)): n for n in dir(_random)
                     if not n.startswith("_") and isinstance(getattr(_random, n), types.MethodType)}


_installed = False


def install_process_stand_ins() -> None:
    """Code that imports ``uuid``, ``random`` or ``time`` inside a function body gets the real modules:
    their functions become stand-ins too, which answer as before on every thread that is not inside an
    imported call (the clock classes of ``datetime`` stay: replacing a class process-wide is not safe)."""
    global _installed
    if _installed:
        return
    _installed = True
    _uuid.uuid4, _uuid.uuid1, _time.time, _time.time_ns = _uuid4, _uuid1, _time_time, _time_ns
    for name in set(_RANDOM_FUNCTIONS.values()):
        setattr(_random, name, _random_function(name))


def make_deterministic(module: types.ModuleType) -> list[str]:
    """Point the module's names for random, uuid, datetime and time at the stand-ins; returns them."""
    install_process_stand_ins()
    replaced = []
    for name, value in list(vars(module).items()):
        stand_in = _MODULES.get(id(value)) or _FUNCTIONS.get(id(value))
        if stand_in is None and id(value) in _RANDOM_FUNCTIONS:
            stand_in = _random_function(_RANDOM_FUNCTIONS[id(value)])
        if stand_in is not None:
            setattr(module, name, stand_in)
            replaced.append(name)
    return replaced
