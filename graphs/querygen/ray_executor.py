"""QueryGen's slots on a Ray cluster (``QueryGenContext.executor = "ray"``).

A pool of Ray async actors, one per CPU of the cluster by default: each actor is a process that
loads its environments and sampler once and runs many slots at once as coroutines
(``querygen.slots.arun_slot``, the same step code threads mode runs), so one actor per core keeps
every core busy while the slots wait on their models. Each slot goes to the actor with the fewest
in flight. The parent stays the record store's one writer: actors never open the store. With a
store, a slot is two calls on one actor: ``start`` samples the chain and returns its task key, the
parent checks the store, and ``finish`` runs the chain's steps (a finished task is not redone).

An actor that dies takes its slots with it: each is retried once on another actor (a new one
replaces the dead), and a slot whose second actor dies too is reported ``not_done`` (nothing is
stored; the next run retries it), never lost.

What actors on other machines need travels with the calls, never through a shared filesystem: the
run's context once per actor (through the object store), the environment variables the pipeline
reads (``ENVFACTORY_*``, model endpoints and the keys ``QueryGenContext.models`` names), and the
packages of environments outside the bundled catalog (packed once, unpacked by each actor into a
folder of its own that goes first on its catalog path). Nodes need envfactory installed.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import io
import itertools
import logging
import os
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

from envfactory.graphs.querygen.context import QueryGenContext

ACTOR_MAX_CONCURRENCY = 1024  # slots one actor runs at once; the run's max_concurrency is the real cap
CONTEXTS_PER_ACTOR = 8
SETTING_PREFIXES = ("ENVFACTORY_", "OPENAI_", "LANGSMITH_", "LANGCHAIN_", "HF_")
CATALOG_PATH_VAR = "ENVFACTORY_CATALOG_PATH"
CONFIG_DIR_VAR = "ENVFACTORY_CONFIG_DIR"
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

log = logging.getLogger(__name__)
_lock = threading.Lock()
_pools: dict[tuple[str, int], "RayPool"] = {}


class ActorLost(RuntimeError):
    """The actor running a slot died (killed, out of memory, its node gone)."""


def ray_module():
    try:
        import ray
    except ImportError:  # the default single-machine path needs no Ray
        raise RuntimeError("executor 'ray' needs Ray: pip install 'envfactory[ray]'") from None
    return ray


def connect(address: str | None = None) -> None:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` runs on this machine;
    ``ray://host:10001``: a remote one), or start a local Ray instance on loopback with one CPU
    per core. A process already connected stays connected (tests, notebooks, `ray.init` of your own)."""
    ray = ray_module()
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        start_local()


def start_local(num_cpus: int | None = None) -> None:
    """A Ray instance of this machine alone, every port on 127.0.0.1. Ray on Linux binds a local
    instance to the machine's routable address, so that other nodes could join it; on macOS and
    Windows it keeps to loopback, and its switch for that choice also works here (read when Ray is
    imported, so set in the environment for Ray's own processes and in the loaded module)."""
    os.environ[LOOPBACK_SWITCH] = "0"
    ray = ray_module()
    from ray._private import ray_constants
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def forwarded_settings(models: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The environment variables the pipeline reads, as they are now in this process (with the key
    variables that these per-role model settings name)."""
    keys = {str(cfg.get("api_key_env") or "OPENAI_API_KEY") for cfg in models.values()}
    return {k: v for k, v in os.environ.items() if k.startswith(SETTING_PREFIXES) or k in keys}


class _SlotActor:
    """One actor process: slots run as coroutines on the process's rollout loop (where the pooled MCP
    sessions live), beside each other; Ray's own actor loop only waits for them."""

    def __init__(self) -> None:
        from envfactory.graphs.querygen.resources import _worker_flag
        _worker_flag["in_worker"] = True  # tool calls inline on the rollout loop; the parent stores records
        self._contexts: collections.OrderedDict[str, QueryGenContext] = collections.OrderedDict()
        self._applied: dict[str, str] = {}
        self._unpacked: dict[str, str] = {}
        self._catalogs = tempfile.mkdtemp(prefix="envfactory-ray-catalog-")
        self._config = tempfile.mkdtemp(prefix="envfactory-ray-config-")

    def pid(self) -> int:
        return os.getpid()

    def cpu(self) -> float:
        """CPU this actor's process spent so far (benchmarks add it to the parent's)."""
        import time
        return time.process_time()

    async def start(self, state: dict[str, Any], run: tuple) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
        """Sample the slot's chain: (update so far, chain state or None, task key)."""
        from envfactory.graphs.querygen.slots import _start_slot
        from envfactory.graphs.querygen.steps import task_key
        from envfactory.envs.chains.sampling import GoldTrajectory
        ctx = await self._prepare(run)

        async def sample():
            update, chain_state = _start_slot(state, ctx)
            key = task_key(GoldTrajectory.model_validate(chain_state["chain"]), ctx) if chain_state else None
            return update, chain_state, key
        return await self._on_rollout_loop(sample())

    async def run(self, state: dict[str, Any], run: tuple) -> dict[str, Any]:
        """The whole slot (or, with ``chain`` in the state, its steps after ``start``)."""
        from envfactory.graphs.querygen.slots import arun_slot
        ctx = await self._prepare(run)
        return await self._on_rollout_loop(arun_slot(state, ctx))

    @staticmethod
    async def _on_rollout_loop(coro):
        from envfactory.graphs.querygen.resources import _loop_state
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, _loop_state()["loop"]))

    async def _prepare(self, run: tuple) -> QueryGenContext:
        digest, boxed_ctx, settings, packages = run
        os.environ[CONFIG_DIR_VAR] = self._config  # its own trust store: grants for the packages it was sent
        catalogs = [await self._unpack(name, *shipped) for name, shipped in sorted(packages.items())]
        settings = {**settings, CONFIG_DIR_VAR: self._config, CATALOG_PATH_VAR: os.pathsep.join(
            [*dict.fromkeys(catalogs), *filter(None, [settings.get(CATALOG_PATH_VAR)])])}
        if settings != self._applied:
            for key in set(self._applied) - set(settings):
                os.environ.pop(key, None)
            os.environ.update(settings)
            self._applied = settings
        if digest not in self._contexts:
            self._contexts[digest] = await boxed_ctx[0]
            while len(self._contexts) > CONTEXTS_PER_ACTOR:
                self._contexts.popitem(last=False)
        return self._contexts[digest]

    async def _unpack(self, name: str, digest: str, boxed: list, trusted: bool) -> str:
        """A package from the object store, unpacked once into its own catalog folder. Its code runs
        here only if the parent trusted it (its user's grant, or bundled) and the content arrived as
        it left: the parent's digest is the grant, checked against what was unpacked."""
        from envfactory.envs.runtime.trust import grant_trust, package_digest
        if digest not in self._unpacked:
            root = os.path.join(self._catalogs, digest[:16])
            with tarfile.open(fileobj=io.BytesIO(await boxed[0])) as tar:
                tar.extractall(os.path.join(root, name), filter="data")
            package = os.path.join(root, name)
            if trusted and package_digest(Path(package)) == digest:
                grant_trust(Path(package), by="the Ray executor's parent process")
            self._unpacked[digest] = root
        return self._unpacked[digest]


class RayPool:
    """``size`` slot actors; each slot goes to the one with the fewest in flight."""

    def __init__(self, size: int):
        ray = ray_module()
        actor_class = ray.remote(num_cpus=1, max_restarts=0)(_SlotActor)
        self._make = lambda: actor_class.options(max_concurrency=ACTOR_MAX_CONCURRENCY).remote()
        self._keys = itertools.count()
        self._actors = {next(self._keys): self._make() for _ in range(size)}
        self._busy = dict.fromkeys(self._actors, 0)
        self._lock = threading.Lock()
        ray.get([a.pid.remote() for a in self._actors.values()])  # started, so the first slots do not wait on it

    def call(self, method: str, *args: Any, on: int | None = None) -> tuple[Any, int]:
        """``method(*args)`` on actor ``on``, or on the least busy one: (result, the actor's key). A
        dead actor raises ``ActorLost`` and is replaced by a new one, so a retry goes elsewhere."""
        ray = ray_module()
        with self._lock:
            key = min(self._actors, key=self._busy.__getitem__) if on is None else on
            actor = self._actors.get(key)
            if actor is None:
                raise ActorLost("the actor that sampled this slot died")
            self._busy[key] += 1
        try:
            return ray.get(getattr(actor, method).remote(*args)), key
        except ray.exceptions.RayActorError as exc:
            self._replace(key, actor)
            raise ActorLost(f"a QueryGen Ray actor died ({type(exc).__name__})") from exc
        finally:
            with self._lock:
                if key in self._busy:
                    self._busy[key] -= 1

    def _replace(self, key: int, actor: Any) -> None:
        with self._lock:
            if self._actors.get(key) is not actor:
                return  # another slot of the same actor replaced it already
            del self._actors[key], self._busy[key]
            fresh = next(self._keys)
            self._actors[fresh], self._busy[fresh] = self._make(), 0

    def actors(self) -> list[Any]:
        with self._lock:
            return list(self._actors.values())

    def shutdown(self) -> None:
        ray = ray_module()
        for actor in self.actors():
            ray.kill(actor)


def pool(ctx: QueryGenContext) -> RayPool:
    """The process's pool for this context's cluster and size (``workers`` actors, or one per CPU)."""
    connect(ctx.ray_address)
    ray = ray_module()
    size = ctx.workers if ctx.workers > 0 else max(1, int(ray.cluster_resources().get("CPU", 1)))
    key = (ray.get_runtime_context().get_job_id(), size)
    with _lock:
        if key not in _pools:
            _pools[key] = RayPool(size)
        return _pools[key]


_runs: dict[int, tuple[QueryGenContext, str, list]] = {}
_packages: dict[tuple, tuple[str, list, bool]] = {}


def _run_args(ctx: QueryGenContext, envs: list[str]) -> tuple:
    """What a slot's call carries besides the slot: the context once in the object store (boxed, so
    Ray does not load it per call), the settings, and the packages of non-bundled environments."""
    ray = ray_module()
    with _lock:
        hit = _runs.get(id(ctx))
        if hit is None or hit[0] is not ctx:  # the entry keeps its context alive: no id reuse
            actor_ctx = dataclasses.replace(ctx, store_path=None)  # the parent alone reads and writes the store
            try:
                ref = ray.put(actor_ctx)
            except Exception as exc:  # say what cannot travel, instead of an actor error later
                raise ValueError(f"the Ray executor needs a picklable context and chat models: {type(exc).__name__}: "
                                 f"{exc}. A client such as ChatOpenAI holds connections that cannot travel: give its "
                                 "settings in QueryGenContext.models instead (each actor builds its own client)") from exc
            if len(_runs) >= 16:
                _runs.pop(next(iter(_runs)))
            hit = _runs[id(ctx)] = (ctx, os.urandom(8).hex(), [ref])
    shipped = {name: _package(name) for name in envs}
    return hit[1], hit[2], forwarded_settings(ctx.models), {k: v for k, v in shipped.items() if v is not None}


def _package(name: str) -> tuple[str, list, bool] | None:
    """A non-bundled environment's package, packed once per content: (its content digest, its bytes
    in the object store, whether this process trusts it). None: bundled, every node has it."""
    from envfactory.envs.runtime.packages import resolve_package
    from envfactory.envs.runtime.trust import is_bundled, is_trusted, package_digest
    path = resolve_package(name)
    if is_bundled(path):
        return None
    files = sorted(p for p in path.rglob("*") if "__pycache__" not in p.parts)
    stamp = (name, str(path), tuple((str(p), p.lstat().st_mtime_ns, p.lstat().st_size) for p in files))
    with _lock:
        hit = _packages.get(stamp)
    if hit is None:  # slots of a run ask for the same packages: hashed and packed once, until a file changes
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(path, arcname=".", filter=lambda info: None if "__pycache__" in info.name else info)
        hit = (package_digest(path), [ray_module().put(buf.getvalue())], is_trusted(path))
        with _lock:
            _packages[stamp] = hit
    return hit


def run_slot_on_ray(state: dict[str, Any], ctx: QueryGenContext, has_record=None) -> dict[str, Any]:
    """One slot on the cluster; blocks the calling thread (a graph node's) until it is done.
    ``has_record(key)`` says whether the store has the task already (None: no store)."""
    for attempt in range(2):  # a dead actor's slot is retried once, on another actor
        p = pool(ctx)
        run = _run_args(ctx, list(state["envs"]))
        try:
            if has_record is None:
                return p.call("run", dict(state), run)[0]
            (update, chain_state, key), actor = p.call("start", dict(state), run)
            if chain_state is None:
                return update
            if has_record(key):
                return {**update, "skipped": 1}
            return {**update, **p.call("run", {**state, "chain": chain_state["chain"]}, run, on=actor)[0]}
        except ActorLost as exc:
            log.warning("QueryGen slot %s: %s (attempt %d of 2)", state.get("slot"), exc, attempt + 1)
    return {"not_done": 1}  # nothing stored: the next run retries the task


def shutdown_ray_executor() -> None:
    """Kill this process's actor pools (the Ray connection stays)."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for p in pools:
        p.shutdown()
