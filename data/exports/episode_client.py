"""Rollout workers' side of the episode servers (``episode_server``): environments served by Ray
actors on the cluster instead of living in each trainer process.

``EpisodeServers.connect(name)`` finds the named server actors a job started
(``episode_server.start_episode_servers``); every episode lives on one of them, and its id says
which (``"<actor>/<id>"``), so any process of the cluster can reach it. Each call has a blocking
form (TRL steps environments synchronously) and an ``a``-prefixed awaitable one (verl's agent loop
runs on an event loop). ``RemoteRollout`` is ``verl_loop.EpisodeRollout`` over a server, for the
verl agent loop (``SERVERS_VAR`` names the servers to use).

This module needs Ray only when a server is used, and never imports the server's own code.
"""
from __future__ import annotations

import itertools
import os
import threading
from typing import Any

DEFAULT_NAME = "envfactory-episodes"
NAMESPACE = "envfactory"
SERVERS_VAR = "ENVFACTORY_EPISODE_SERVERS"   # set to a server name: verl's agent loop uses those servers


class EpisodeReleased(KeyError):
    """The episode is not on its server (released by its rollout, or idle past the server's timeout)."""


def actor_name(name: str, index: int) -> str:
    return f"{name}-{index}"


class EpisodeServers:
    """Handles to the episode server actors of one name; new episodes go round-robin over them."""

    def __init__(self, actors: list[Any]):
        if not actors:
            raise ValueError("EpisodeServers needs at least one server actor")
        self.actors = list(actors)
        self._next = itertools.count()
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, name: str = DEFAULT_NAME) -> "EpisodeServers":
        """The running servers called ``name`` (started by ``start_episode_servers``)."""
        import ray
        if not ray.is_initialized():
            ray.init(address="auto", log_to_driver=False)
        actors = []
        for i in itertools.count():
            try:
                actors.append(ray.get_actor(actor_name(name, i), namespace=NAMESPACE))
            except ValueError:
                break
        if not actors:
            raise LookupError(f"no envfactory episode servers named {name!r} on this Ray cluster; start them with "
                              "envfactory.data.exports.episode_server.start_episode_servers(name=...)")
        return cls(actors)

    def __reduce__(self):  # a handle travels to other Ray workers as its actors
        return (EpisodeServers, (self.actors,))

    def _new(self) -> int:
        with self._lock:
            return next(self._next) % len(self.actors)

    def _route(self, episode: str) -> tuple[Any, str]:
        index, _, local = episode.partition("/")
        if not index.isdigit() or int(index) >= len(self.actors) or not local:
            raise EpisodeReleased(f"{episode!r} is not an episode id of these servers")
        return self.actors[int(index)], local

    # -- awaitable forms (verl's agent loop, any asyncio code)
    async def areset(self, row: dict[str, Any]) -> dict[str, Any]:
        """Open an episode for a row (a verl row: ``extra_info`` and ``ground_truth``; a TRL row: its
        columns with ``environment``): ``{"episode", "tools", "failure"}``."""
        index = self._new()
        out = await self.actors[index].reset.remote(row)
        return {**out, "episode": f"{index}/{out['episode']}"}

    async def acall(self, episode: str, tool: str, arguments: dict[str, Any]) -> str:
        actor, local = self._route(episode)
        return _unwrap(await actor.call.remote(local, tool, arguments))

    async def astep(self, episode: str, text: str) -> dict[str, Any]:
        actor, local = self._route(episode)
        return _unwrap(await actor.step.remote(local, text))

    async def ascore(self, episode: str, malformed: int = 0) -> dict[str, Any]:
        actor, local = self._route(episode)
        return _unwrap(await actor.score.remote(local, malformed))

    async def afinish(self, episode: str) -> dict[str, Any]:
        actor, local = self._route(episode)
        return _unwrap(await actor.finish.remote(local))

    async def arelease(self, episode: str) -> bool:
        actor, local = self._route(episode)
        return await actor.release.remote(local)

    # -- blocking forms (TRL's environment classes, scripts)
    def reset(self, row: dict[str, Any]) -> dict[str, Any]:
        import ray
        index = self._new()
        out = ray.get(self.actors[index].reset.remote(row))
        return {**out, "episode": f"{index}/{out['episode']}"}

    def call(self, episode: str, tool: str, arguments: dict[str, Any]) -> str:
        return self._get(episode, "call", tool, arguments)

    def score(self, episode: str, malformed: int = 0) -> dict[str, Any]:
        return self._get(episode, "score", malformed)

    def release(self, episode: str) -> bool:
        import ray
        actor, local = self._route(episode)
        return ray.get(actor.release.remote(local))

    def release_soon(self, episode: str) -> None:
        """Release without waiting for the answer (an object going away)."""
        actor, local = self._route(episode)
        actor.release.remote(local)

    def stats(self) -> list[dict[str, Any]]:
        import ray
        return ray.get([a.stats.remote() for a in self.actors])

    def _get(self, episode: str, method: str, *args: Any) -> Any:
        import ray
        actor, local = self._route(episode)
        return _unwrap(ray.get(getattr(actor, method).remote(local, *args)))


def _unwrap(reply: Any) -> Any:
    """A server answers an unknown episode with ``{"released": reason}`` (not an exception: Ray would
    wrap it in its own error type)."""
    if isinstance(reply, dict) and "released" in reply and len(reply) == 1:
        raise EpisodeReleased(reply["released"])
    return reply


_connected: dict[str, EpisodeServers] = {}


def servers_from_environment() -> EpisodeServers | None:
    """The servers named by ``ENVFACTORY_EPISODE_SERVERS`` (None: run episodes in this process),
    found once per process."""
    name = os.environ.get(SERVERS_VAR, "").strip()
    if not name:
        return None
    if name not in _connected:
        _connected[name] = EpisodeServers.connect(name)
    return _connected[name]


class RemoteRollout:
    """``verl_loop.EpisodeRollout``'s interface (``tools``, ``failure``, ``step``, ``finish``) over an
    episode server; ``step`` and ``finish`` are awaitable (``run_token_loop`` awaits them)."""

    def __init__(self, servers: EpisodeServers, opened: dict[str, Any]):
        self.servers = servers
        self.episode = opened["episode"]
        self.tools = opened["tools"]
        self.failure = opened["failure"]

    @classmethod
    async def open(cls, servers: EpisodeServers, extra_info: dict[str, Any], ground_truth: Any = None,
                   max_calls_per_step: int | None = None) -> "RemoteRollout":
        return cls(servers, await servers.areset({"extra_info": dict(extra_info), "ground_truth": ground_truth,
                                                  "max_calls_per_step": max_calls_per_step}))

    async def step(self, text: str) -> list[dict[str, str]]:
        out = await self.servers.astep(self.episode, text)
        self.failure = out["failure"]
        return out["messages"]

    async def finish(self) -> dict[str, Any]:
        """What compute_score needs (the server closes the episode)."""
        return await self.servers.afinish(self.episode)
