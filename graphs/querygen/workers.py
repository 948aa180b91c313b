"""Worker processes for QueryGen's chain slots (``QueryGenContext.workers``).

One Python process runs one thread of Python at a time, and a slot's own work (sampling, tool
calls over MCP, scoring) is CPU: past a few concurrent chains, one process is busy, not waiting on
the model. Worker processes run slots side by side on every core.

Each worker runs many slots at once, as coroutines on one event loop (``querygen.slots.arun_slot``): a
worker is busy with one slot's CPU work while its other slots wait on their models. One process
per core is enough; the run's ``max_concurrency`` caps the slots in flight over all workers, and
each new slot goes to the worker with the fewest. (``concurrent.futures.ProcessPoolExecutor``
runs one call per worker at a time: it would need a process per slot in flight, and 32 processes
on 2 cores spent ~1.5x the CPU per slot, with cold caches and context switches.)

Workers fork from a forkserver that imported the pipeline once (a fresh process, never a fork of
a parent with threads running), and live for the process's lifetime (pool reused across runs
with the same size). Everything a slot needs travels by pickle: the slot and the run's context
(injected chat models are copied, so a model's state such as a call counter stays in the worker).
A context object is pickled once, and sent to each worker once: pass a new context (not a mutated
one) to change a setting.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import inspect
import itertools
import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from envfactory.envs.runtime.lru import BoundedCache

PRELOAD = ["envfactory.graphs.querygen", "envfactory.envs.mcp", "envfactory.agents.rollout_agent",
           "envfactory.data.reward", "langchain_core.language_models"]
CONTEXTS_PER_WORKER = 8  # run contexts a worker keeps (a new run sends its context once per worker)
SHUTDOWN_GRACE_SECONDS = 60  # for the slots in flight when the workers are asked to stop

_lock = threading.Lock()
_pools: dict[tuple[int, int], "WorkerPool"] = {}
_cpu = {"seconds": 0.0}


class WorkerDied(RuntimeError):
    pass


class _Worker:
    """One worker process, its pipe, and the parent's thread that reads its replies."""

    def __init__(self, mp: Any, on_broken: Callable[["_Worker"], None]):
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_serve, args=(child,), name="querygen-worker", daemon=True)
        self.process.start()
        child.close()
        self.send_lock = threading.Lock()      # one message at a time on the pipe, in decision order
        self.pending: dict[int, Future] = {}   # guarded by the pool's lock
        self.sent_contexts: collections.deque[str] = collections.deque(maxlen=CONTEXTS_PER_WORKER)
        self.cpu = 0.0                         # the worker's own process CPU, as last reported
        self._on_broken = on_broken
        threading.Thread(target=self._read, name="querygen-worker-reader", daemon=True).start()

    def send(self, job_id: int, fn: Callable, state: Any, blob: bytes, digest: str) -> None:
        with self.send_lock:
            # The worker keeps the same last CONTEXTS_PER_WORKER contexts, in the order sent here.
            fresh = digest not in self.sent_contexts
            self.conn.send((job_id, fn, state, digest, blob if fresh else None, _settings()))
            if fresh:  # only once it went out (a slot that cannot be pickled sends nothing)
                self.sent_contexts.append(digest)

    def _read(self) -> None:
        while True:
            try:
                job_id, ok, payload, cpu = self.conn.recv()
            except (EOFError, OSError):
                self._on_broken(self)
                return
            with _lock:
                _cpu["seconds"] += max(0.0, cpu - self.cpu)
                self.cpu = max(self.cpu, cpu)
                future = self.pending.pop(job_id, None)
            if future is None:
                continue
            try:  # unpickled here, not in recv(): a result this process cannot load fails its slot, not this thread
                value = pickle.loads(payload)
            except Exception as exc:
                ok, value = False, RuntimeError(f"a QueryGen worker's result could not be loaded here: "
                                                f"{type(exc).__name__}: {exc}")
            future.set_result(value) if ok else future.set_exception(value)


class WorkerPool:
    """``workers`` processes; each runs any number of slots at once on its event loop."""

    def __init__(self, workers: int):
        mp = multiprocessing.get_context("forkserver")
        mp.set_forkserver_preload(PRELOAD)
        self.broken = False
        self._ids = itertools.count()
        self._workers = [_Worker(mp, self._worker_died) for _ in range(workers)]

    def submit(self, fn: Callable, state: Any, blob: bytes, digest: str) -> Future:
        future: Future = Future()
        with _lock:
            if self.broken:
                raise WorkerDied("a QueryGen worker process died; finished tasks are stored, run again to resume")
            worker = min(self._workers, key=lambda w: len(w.pending))  # the least busy takes the slot
            job_id = next(self._ids)
            worker.pending[job_id] = future
        try:
            worker.send(job_id, fn, state, blob, digest)
        except OSError:  # the worker died while idle: fail this slot like the ones it was running
            self._worker_died(worker)
        except BaseException:  # nothing was sent (a slot that cannot be pickled): forget the slot
            with _lock:
                worker.pending.pop(job_id, None)
            raise
        return future

    def _worker_died(self, worker: _Worker) -> None:
        """A worker's pipe closed (killed, out of memory, shut down): its slots fail, and the next slot
        gets a new pool."""
        with _lock:
            lost, worker.pending = worker.pending, {}
            retire = bool(lost) and not self.broken
            if lost:
                self.broken = True
                for key in [k for k, p in _pools.items() if p is self]:
                    del _pools[key]
        if retire:  # the other workers finish their slots, then exit (not left running until this process ends)
            threading.Thread(target=self.shutdown, name="querygen-pool-retire", daemon=True).start()
        worker.process.join(timeout=1)  # reaped, so its exit code can be told
        code = worker.process.exitcode
        for future in lost.values():
            future.set_exception(WorkerDied(f"a QueryGen worker process died (exit code {code}); "
                                            "finished tasks are stored, run again to resume"))

    def shutdown(self) -> None:
        """Ask every worker to finish its slots and exit, and wait for them."""
        for w in self._workers:
            with w.send_lock:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in self._workers:
            w.process.join(timeout=SHUTDOWN_GRACE_SECONDS)
            if w.process.is_alive():  # a slot that never ends must not hang the caller
                w.process.terminate()
                w.process.join()


def _serve(conn: Any) -> None:
    """A worker's main thread: takes slots from the pipe and starts each on the process's rollout loop
    (the one the pooled MCP sessions live on); the loop's thread sends each result when it is done."""
    import signal
    # Ctrl-C reaches the whole process group: the parent stops the run and then its workers (a worker that
    # died of it would fail its slots one by one while the parent started new ones)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from envfactory.graphs.querygen.resources import _loop_state
    loop: asyncio.AbstractEventLoop = _loop_state()["loop"]
    contexts: collections.OrderedDict[str, Any] = collections.OrderedDict()
    send_lock = threading.Lock()
    idle = threading.Condition()
    running = [0]

    def reply(job_id: int, ok: bool, payload: Any) -> None:
        try:
            blob = pickle.dumps(payload)
        except Exception as exc:  # say what could not travel back, instead of losing the slot
            ok, blob = False, pickle.dumps(RuntimeError(f"a slot's result could not be sent back: "
                                                        f"{type(exc).__name__}: {exc}"))
        with send_lock:
            conn.send((job_id, ok, blob, time.process_time()))
        with idle:
            running[0] -= 1
            idle.notify_all()

    def finished(job_id: int, future: Future) -> None:
        exc = future.exception()
        reply(job_id, exc is None, future.result() if exc is None else exc)

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:  # shut down once the slots in flight are done
            with idle:
                idle.wait_for(lambda: running[0] == 0)
            return
        job_id, fn, state, digest, blob, settings = message
        with idle:
            running[0] += 1
        try:
            _apply_settings(settings)
            if blob is not None:
                contexts[digest] = _load_context(blob)
                while len(contexts) > CONTEXTS_PER_WORKER:
                    contexts.popitem(last=False)
            out = fn(state, contexts[digest])
        except Exception as exc:
            reply(job_id, False, exc)
            continue
        if inspect.isawaitable(out):
            asyncio.run_coroutine_threadsafe(out, loop).add_done_callback(lambda f, j=job_id: finished(j, f))
        else:
            reply(job_id, True, out)


def _load_context(blob: bytes) -> Any:
    try:
        return pickle.loads(blob)
    except Exception as exc:  # typically a class defined in a notebook or a script's __main__
        raise RuntimeError(f"a QueryGen worker process could not load the run's context: {type(exc).__name__}: {exc}; "
                           "classes it holds (e.g. a chat model) must be importable from a module, not defined in "
                           "a notebook or __main__; or set workers=0 to run in this process") from None


def _settings() -> dict[str, str]:
    """The parent's environment variables as they are now (catalog path, model endpoints and their
    keys...): a worker forks from the forkserver, whose environment may be older."""
    return dict(os.environ)


def _apply_settings(settings: dict[str, str]) -> None:
    if settings != os.environ:
        for key in [k for k in os.environ if k not in settings]:
            del os.environ[key]
        os.environ.update(settings)


def _pool(workers: int) -> WorkerPool:
    key = (os.getpid(), workers)
    with _lock:
        if key not in _pools:
            _pools[key] = WorkerPool(workers)
        return _pools[key]


_sent = BoundedCache(16)      # id(context) -> (context, pickled, digest): parent side


def _pickled(context: Any) -> tuple[bytes, str]:
    """The run's context pickled once per run (it can carry chat models with large state)."""
    hit = _sent.get(id(context))
    if hit is not None and hit[0] is context:  # the entry keeps its context alive: no id reuse
        return hit[1], hit[2]
    try:
        blob = pickle.dumps(context)
    except Exception as exc:  # say what cannot travel, instead of a pool error later
        raise ValueError(f"QueryGen workers need a picklable context and chat models: {type(exc).__name__}: {exc}. "
                         "A client such as ChatOpenAI holds connections that cannot travel: give its settings in "
                         "QueryGenContext.models instead (e.g. {'rollout': {'model': ..., 'base_url': ...}}; each "
                         "worker builds its own client), or set workers=0 to run in this process") from exc
    digest = hashlib.sha256(blob).hexdigest()
    _sent.put(id(context), (context, blob, digest))
    return blob, digest


def run_in_worker(workers: int, fn: Callable[..., Any], state: Any, context: Any) -> Any:
    """``fn(state, context)`` in a worker of the pool of ``workers`` processes; blocks the calling
    thread until done. ``fn`` may return an awaitable: the worker awaits it on its event loop,
    beside its other slots. The context is unpickled once per worker and run, not once per slot."""
    blob, digest = _pickled(context)
    try:
        return _pool(workers).submit(fn, state, blob, digest).result()
    except WorkerDied as exc:
        raise RuntimeError(str(exc)) from exc


def worker_cpu_seconds() -> float:
    """CPU the workers of this process spent so far, as they last reported it (benchmarks add it
    to their own)."""
    with _lock:
        return _cpu["seconds"]


def shutdown_workers() -> None:
    with _lock:
        pools = [p for (pid, _), p in _pools.items() if pid == os.getpid()]
        for key in [k for k in _pools if k[0] == os.getpid()]:
            del _pools[key]
    for p in pools:
        p.shutdown()
