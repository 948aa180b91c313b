"""Episode servers: Ray actors that host environment episodes for the rollout workers of verl or TRL
on the same cluster (``episode_client`` is the workers' side).

A server is an async actor holding many episodes, each isolated (its own in-memory SQLite copy,
as in-process). ``reset(row)`` opens one for a verl row (``extra_info``, ``ground_truth``: an
``verl_loop.EpisodeRollout``, with its drift and gold checks) or a TRL row (its columns with
``environment``: an instance of ``trl_env.environment_class``), ``call`` runs a tool on it,
``step`` runs the ``<tool_call>`` blocks of a verl reply, ``score`` gives our composite reward,
``finish`` the fields verl's ``compute_score`` reads, and ``release`` (or ``finish``) closes it.
An episode idle for ``idle_timeout`` seconds is released (a rollout worker that died never
leaks one). A server's work is CPU on its own event loop, one call at a time, so episodes on one
server never run concurrently; start one server per core you give to environments.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from envfactory.data.reward import RewardConfig
from envfactory.data.exports.episode_client import DEFAULT_NAME, NAMESPACE, EpisodeServers, actor_name
from envfactory.data.exports.trl_env import environment_class
from envfactory.data.exports.verl_loop import EpisodeRollout, row_tools
from envfactory.data.exports.verl_reward import score_rollout
from envfactory.data.exports.verl_task import VerlTask

IDLE_TIMEOUT_SECONDS = 600.0
MAX_CONCURRENCY = 4096  # calls one server accepts at once (they queue on its loop)


class _VerlEpisode:
    def __init__(self, row: dict[str, Any]):
        self.extra_info, self.gold = dict(row["extra_info"]), row.get("ground_truth")
        self.rollout = EpisodeRollout(VerlTask.from_extra_info(self.extra_info), row.get("max_calls_per_step"),
                                      gold=self.gold, tools=row_tools(self.extra_info))
        self.tools, self.fields = self.rollout.tools, None

    @property
    def failure(self) -> str | None:
        return self.rollout.failure

    def call(self, tool: str, arguments: dict[str, Any]) -> str:
        return self.rollout.execute(tool, arguments)

    def step(self, text: str) -> dict[str, Any]:
        return {"messages": self.rollout.step(text), "failure": self.rollout.failure}

    def finish(self) -> dict[str, Any]:
        if self.fields is None:
            self.fields = self.rollout.finish()
        return self.fields

    def score(self, malformed: int = 0) -> dict[str, Any]:
        fields = self.finish()
        fields = {**fields, "malformed": fields["malformed"] + malformed}
        result, failure = score_rollout(self.gold, self.extra_info, fields)
        return {"score": result.score, "reward": result.model_dump(), "failure_kind": failure,
                "calls": [{"tool": c["name"]} for c in self.rollout.calls],
                "state_hashes": fields["final_hashes"]}

    def close(self) -> None:
        self.rollout.close()


class _TRLEpisode:
    _classes: dict[tuple[str, str], type] = {}

    def __init__(self, row: dict[str, Any]):
        row = dict(row)
        name, config = row.pop("environment"), RewardConfig.model_validate(row.pop("reward_config", None) or {})
        key = (name, config.model_dump_json())
        if key not in self._classes:
            self._classes[key] = environment_class(name, config)
        self.env = self._classes[key]()
        self.env.reset(**row)
        self.tools = [spec.openai_schema() for spec in self.env._environment.tool_specs]

    @property
    def failure(self) -> str | None:
        return self.env._failure

    def call(self, tool: str, arguments: dict[str, Any]) -> str:
        return self.env._call(tool, arguments)

    def step(self, text: str) -> dict[str, Any]:
        raise ValueError("step parses verl replies; a TRL row's tools are called one by one (call)")

    def finish(self) -> dict[str, Any]:
        raise ValueError("finish gives verl's compute_score fields; score a TRL row's episode instead")

    def score(self, malformed: int = 0) -> dict[str, Any]:
        result = self.env._score(malformed)
        episode = self.env._episode
        return {"score": result.score, "reward": result.model_dump(), "failure_kind": None,
                "calls": [{"tool": c.tool, "ok": c.ok} for c in self.env._calls()],
                "state_hashes": {self.env._environment.name: episode.state_hash()} if episode is not None else {}}

    def close(self) -> None:
        if self.env._episode is not None:
            self.env._episode.close()
            self.env._episode = None


class EpisodeServer:
    """One server actor's episodes (Ray turns this class into the actor; plain Python in tests)."""

    def __init__(self, idle_timeout: float = IDLE_TIMEOUT_SECONDS):
        self.idle_timeout = idle_timeout
        self._episodes: dict[str, tuple[Any, float]] = {}
        self._timed_out = 0
        self._peak = 0

    async def reset(self, row: dict[str, Any]) -> dict[str, Any]:
        self._sweep()
        if not isinstance(row, dict) or not ("extra_info" in row or "environment" in row):
            raise ValueError("reset needs a verl row (extra_info, ground_truth) or a TRL row (with 'environment')")
        episode = _VerlEpisode(row) if "extra_info" in row else _TRLEpisode(row)
        key = uuid.uuid4().hex
        self._episodes[key] = (episode, time.monotonic())
        self._peak = max(self._peak, len(self._episodes))
        return {"episode": key, "tools": episode.tools, "failure": episode.failure}

    async def call(self, key: str, tool: str, arguments: dict[str, Any]) -> Any:
        return self._on(key, lambda e: e.call(tool, arguments))

    async def step(self, key: str, text: str) -> Any:
        return self._on(key, lambda e: e.step(text))

    async def score(self, key: str, malformed: int = 0) -> Any:
        return self._on(key, lambda e: e.score(malformed))

    async def finish(self, key: str) -> Any:
        out = self._on(key, lambda e: e.finish())
        await self.release(key)
        return out

    async def release(self, key: str) -> bool:
        entry = self._episodes.pop(key, None)
        if entry is not None:
            entry[0].close()
        return entry is not None

    async def stats(self) -> dict[str, Any]:
        self._sweep()
        return {"episodes": len(self._episodes), "peak": self._peak, "released_idle": self._timed_out}

    def _on(self, key: str, fn) -> Any:
        entry = self._episodes.get(key)
        if entry is not None and entry[1] < time.monotonic() - self.idle_timeout:
            self._episodes.pop(key)[0].close()
            self._timed_out += 1
            entry = None
        if entry is None:
            return {"released": f"episode {key} is not open on this server (released, or idle for more than "
                                f"{self.idle_timeout:g} s)"}
        self._episodes[key] = (entry[0], time.monotonic())
        return fn(entry[0])

    def _sweep(self) -> None:
        """Release episodes idle past the timeout (their rollout ended without releasing them)."""
        cutoff = time.monotonic() - self.idle_timeout
        for key in [k for k, (_, used) in self._episodes.items() if used < cutoff]:
            self._episodes.pop(key)[0].close()
            self._timed_out += 1


def start_episode_servers(name: str = DEFAULT_NAME, servers: int = 1, idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                          num_cpus: float = 1) -> EpisodeServers:
    """Start ``servers`` named episode server actors on the connected Ray cluster (detached: they
    outlive this driver, so the trainer's workers can find them by ``name``); returns their handles."""
    import ray
    remote = ray.remote(EpisodeServer)
    actors = [remote.options(name=actor_name(name, i), namespace=NAMESPACE, lifetime="detached",
                             max_concurrency=MAX_CONCURRENCY, num_cpus=num_cpus, get_if_exists=True).remote(idle_timeout)
              for i in range(servers)]
    ray.get([a.stats.remote() for a in actors])  # started
    return EpisodeServers(actors)


def stop_episode_servers(servers: EpisodeServers) -> None:
    import ray
    for actor in servers.actors:
        ray.kill(actor)
