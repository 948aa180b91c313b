"""What one verl row asks for, and how its starting state is rebuilt.

A row is one user turn of a trajectory. Its starting state is the environment's initial state
with the *earlier* turns' gold calls replayed on it; the state hash of that replay is stored in
the row, so a changed environment (new seed data, edited tools) is detected as drift instead of
silently training on a different world. The agent loop and ``compute_score`` both start from here.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from envfactory.data.reward import Call, GoldReference, GoldReplayError, replay_calls, replay_gold
from envfactory.envs.runtime.cache import load_env  # the process's one environment cache
from envfactory.envs.runtime.lru import BoundedCache
from envfactory.envs.runtime.environment import Environment, Episode

from envfactory.data.exports.calls import parse_calls

TASK_CACHE_SIZE = 4096  # rows whose starting state and gold reference are kept (GRPO opens n rollouts per row)


class StateDriftError(GoldReplayError):
    """The environment no longer reproduces the state the row was exported from (a gold replay
    that fails or ends elsewhere because the environment changed)."""


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
                       prefix_calls=parse_calls(extra_info["prefix_calls"], "extra_info.prefix_calls"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"extra_info is not an envfactory verl row ({type(exc).__name__}: {exc}); "
                             "export it with `envfactory export --format verl`") from exc

    @property
    def env_names(self) -> list[str]:
        return [e.name for e in self.envs]


QUALIFIER = "__"   # env__tool: how a tool name that several exported environments share is shown
TASK_KWARGS_KEY = "envfactory"   # the one tools_kwargs entry of every row (its task, for the stock loop's tools)


def exported_name(env: str, tool: str, qualified: set[str] | frozenset[str]) -> str:
    """The name rows, schemas, tool configs and gold calls give ``tool`` of ``env``: qualified with the
    environment's name when several exported environments have a tool of that name, as is otherwise."""
    return f"{env}{QUALIFIER}{tool}" if tool in qualified else tool


def colliding_tools(envs: dict[str, Environment]) -> frozenset[str]:
    """Tool names that more than one of ``envs`` has (verl's tool config holds one tool per name)."""
    seen: dict[str, int] = {}
    for env in envs.values():
        for spec in env.tool_specs:
            seen[spec.name] = seen.get(spec.name, 0) + 1
    return frozenset(name for name, n in seen.items() if n > 1)


def route(envs: dict[str, Environment], tool: str) -> tuple[str, str] | None:
    """(environment, tool) for a name a row shows: a tool the environment owns (names are unique within a
    task's tool set), or ``env__tool`` when exported environments share the name."""
    for name, env in envs.items():
        if tool in env.tools:
            return name, tool
    env_name, sep, rest = tool.partition(QUALIFIER)
    if sep and env_name in envs and rest in envs[env_name].tools:
        return env_name, rest
    return None


def internal_calls(calls: list[Call]) -> list[Call]:
    """Gold calls as the environments know them: an ``env__tool`` name back to the tool's own name."""
    out = []
    for c in calls:
        prefix = f"{c.env}{QUALIFIER}" if c.env else None
        out.append(c.model_copy(update={"name": c.name[len(prefix):]}) if prefix and c.name.startswith(prefix) else c)
    return out


def task_from_tools_kwargs(tools_kwargs: Any) -> "VerlTask":
    """The row's task from its ``tools_kwargs`` (what verl's stock loop keeps on ``agent_data``)."""
    try:
        return VerlTask.model_validate_json(tools_kwargs[TASK_KWARGS_KEY]["create_kwargs"]["task"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"tools_kwargs has no envfactory task ({type(exc).__name__}: {exc}); export the rows with "
                         "`envfactory export --format verl`") from exc


def replay_prefix(envs: dict[str, Environment], calls: list[Call]) -> dict[str, Episode]:
    """Fresh episodes with ``calls`` replayed in order; a failing call is drift, not the policy's fault."""
    try:
        return replay_calls(envs, calls, what="earlier-turn gold call")
    except GoldReplayError as exc:
        raise StateDriftError(str(exc)) from exc


def _task_key(task: VerlTask) -> str:
    """What defines a turn's starting state (not which record or turn the row came from)."""
    return VerlTask(record_key="", turn=0, envs=task.envs, prefix_calls=task.prefix_calls).model_dump_json()


def _check_pins(task: VerlTask, envs: dict[str, Environment]) -> None:
    for pin in task.envs:
        env = envs[pin.name]
        if env.manifest.version != pin.version:
            raise StateDriftError(f"{pin.name} is version {env.manifest.version}, the row was exported from {pin.version}")
        if env.initial_hash != pin.initial_state_hash:
            raise StateDriftError(f"{pin.name} {pin.version}: its initial state changed since the export "
                                  f"(hash {env.initial_hash[:12]}, row has {pin.initial_state_hash[:12]})")


def _replay_turn_states(task: VerlTask) -> tuple[tuple[str, bytes], ...]:
    envs = {p.name: load_env(p.name) for p in task.envs}
    _check_pins(task, envs)
    episodes = replay_prefix(envs, task.prefix_calls)
    try:
        for pin in task.envs:
            got = episodes[pin.name].state_hash()
            if got != pin.turn_state_hash:
                raise StateDriftError(f"{pin.name}: replaying the earlier turns gives state {got[:12]}, "
                                      f"the row was exported at {pin.turn_state_hash[:12]}")
        # imported classes (no SQLite connection): a snapshot, which holds the live objects as well
        return tuple((n, ep.conn.serialize() if hasattr(ep, "conn") else ep.snapshot()) for n, ep in episodes.items())
    finally:
        for ep in episodes.values():
            ep.close()


_turn_states = BoundedCache(TASK_CACHE_SIZE)


def turn_states(task: VerlTask) -> dict[str, bytes]:
    """The state each environment is in when this turn starts (cached: GRPO opens n episodes per row)."""
    return dict(_turn_states.get_or_make(_task_key(task), lambda: _replay_turn_states(task)))


def open_turn_episodes(task: VerlTask) -> dict[str, Episode]:
    """One fresh, isolated episode per environment, at the turn's starting state."""
    return {name: load_env(name).episode(state=data) for name, data in turn_states(task).items()}


def replay_rollout(task: VerlTask, calls: list[dict[str, Any]]) -> dict[str, Episode]:
    """Fresh episodes at the turn's starting state with a rollout's recorded calls (``env``, ``name``,
    ``arguments``) replayed: how the reward rebuilds a rollout, and how the agent loop checks it can."""
    episodes = open_turn_episodes(task)
    try:
        for c in calls:
            if c.get("env") in episodes:
                episodes[c["env"]].call(c["name"], c.get("arguments") or {})
    except BaseException:
        for ep in episodes.values():
            ep.close()
        raise
    return episodes


def _replay_turn_gold(task: VerlTask, gold: list[Call]) -> GoldReference:
    gold = internal_calls(gold)
    states = turn_states(task)
    reference = replay_gold({name: load_env(name) for name in states}, gold, states)
    for pin in task.envs:  # the start state matched the row: a different end is the gold's (or its tools')
        got = reference.final_hashes.get(pin.name)
        if got != pin.gold_final_hash:
            raise GoldReplayError(f"{pin.name}: the turn's gold calls end in state {(got or '')[:12]}, "
                                  f"the row was exported with {pin.gold_final_hash[:12]}")
    return reference


_gold_refs = BoundedCache(TASK_CACHE_SIZE)


def turn_gold(task: VerlTask, gold: list[Call]) -> GoldReference:
    """The turn's gold reference: its gold calls replayed on the turn's starting state, ending where the
    row says (cached per row and gold). Raises StateDriftError when the turn's starting state cannot be
    rebuilt, GoldReplayError when a gold call no longer executes or the gold ends in another state."""
    key = (_task_key(task), json.dumps([c.model_dump() for c in gold], sort_keys=True, ensure_ascii=False))
    return _gold_refs.get_or_make(key, lambda: _replay_turn_gold(task, gold))
