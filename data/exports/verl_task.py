"""What one verl row asks for, and how its starting state is rebuilt.

A row is one user turn of a trajectory. Its starting state is the environment's initial state
with the *earlier* turns' gold calls replayed on it; the state hash of that replay is stored in
the row, so a changed environment (new seed data, edited tools) is detected as drift instead of
silently training on a different world. The agent loop and ``compute_score`` both start from here.
"""
from __future__ import annotations

import json
import threading
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from envfactory.data.reward import Call
from envfactory.envs.runtime import Environment, Episode


class StateDriftError(RuntimeError):
    """The environment no longer reproduces the state the row was exported from."""


class EnvPin(BaseModel):
    """One environment of a row: its version and the state hashes the row was exported with."""

    name: str
    version: str
    initial_state_hash: str          # the package's own initial state
    turn_state_hash: str             # after replaying the earlier turns' gold calls: where this turn starts
    gold_final_hash: str             # after this turn's gold calls


class VerlTask(BaseModel):
    record_key: str
    turn: int                        # 0-based index of the user turn this row trains
    envs: list[EnvPin]
    prefix_calls: list[Call]         # earlier turns' gold calls, in order

    @classmethod
    def from_extra_info(cls, extra_info: dict[str, Any]) -> "VerlTask":
        """Read the row's ``extra_info`` (as verl hands it over: Arrow structs become dicts)."""
        try:
            return cls(record_key=extra_info["record_key"], turn=int(extra_info["turn"]),
                       envs=[EnvPin.model_validate(dict(e)) for e in extra_info["envs"]],
                       prefix_calls=[Call.model_validate(c) for c in json.loads(extra_info["prefix_calls"])])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"extra_info is not an envfactory verl row ({type(exc).__name__}: {exc}); "
                             "export it with `envfactory export --format verl`") from exc

    @property
    def env_names(self) -> list[str]:
        return [e.name for e in self.envs]


_env_lock = threading.Lock()


@lru_cache(maxsize=64)
def _load(name: str) -> Environment:
    return Environment.load(name)


def load_env(name: str) -> Environment:
    with _env_lock:  # loading imports tool code; do it once per process
        return _load(name)


def route(envs: dict[str, Environment], tool: str) -> str | None:
    """The environment that owns a tool name (names are unique within a task's tool set)."""
    for name, env in envs.items():
        if tool in env.tools:
            return name
    return None


def replay_prefix(envs: dict[str, Environment], calls: list[Call]) -> dict[str, Episode]:
    """Fresh episodes with ``calls`` replayed in order; a failing call is drift, not the policy's fault."""
    episodes = {n: e.episode() for n, e in envs.items()}
    try:
        for i, call in enumerate(calls):
            env_name = call.env or route(envs, call.name)
            if env_name not in episodes:
                raise StateDriftError(f"earlier-turn gold call {i + 1} ({call.name}) names environment {env_name!r}, "
                                      f"which is not among the row's environments {sorted(envs)}")
            res = episodes[env_name].call(call.name, call.arguments)
            if not res.ok:
                raise StateDriftError(f"earlier-turn gold call {i + 1} {call.name} no longer executes: {res.error}")
        return episodes
    except BaseException:
        for ep in episodes.values():
            ep.close()
        raise


@lru_cache(maxsize=4096)
def _turn_states(key: str) -> tuple[tuple[str, bytes], ...]:
    task = VerlTask.model_validate_json(key)
    envs = {p.name: load_env(p.name) for p in task.envs}
    for pin in task.envs:
        env = envs[pin.name]
        if env.manifest.version != pin.version:
            raise StateDriftError(f"{pin.name} is version {env.manifest.version}, the row was exported from {pin.version}")
        if env.initial_hash != pin.initial_state_hash:
            raise StateDriftError(f"{pin.name} {pin.version}: its initial state changed since the export "
                                  f"(hash {env.initial_hash[:12]}, row has {pin.initial_state_hash[:12]})")
    episodes = replay_prefix(envs, task.prefix_calls)
    try:
        for pin in task.envs:
            got = episodes[pin.name].state_hash()
            if got != pin.turn_state_hash:
                raise StateDriftError(f"{pin.name}: replaying the earlier turns gives state {got[:12]}, "
                                      f"the row was exported at {pin.turn_state_hash[:12]}")
        return tuple((n, ep.conn.serialize()) for n, ep in episodes.items())
    finally:
        for ep in episodes.values():
            ep.close()


def turn_states(task: VerlTask) -> dict[str, bytes]:
    """The state each environment is in when this turn starts (cached: GRPO opens n episodes per row)."""
    key = VerlTask(record_key="", turn=0, envs=task.envs, prefix_calls=task.prefix_calls).model_dump_json()
    return dict(_turn_states(key))


def open_turn_episodes(task: VerlTask) -> dict[str, Episode]:
    """One fresh, isolated episode per environment, at the turn's starting state."""
    return {name: load_env(name).episode(state=data) for name, data in turn_states(task).items()}
