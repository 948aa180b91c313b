"""Untrusted packages under the ordinary Environment contract: ``SandboxedEnvironment``.

One contained child server per environment (``server``, behind ``contain``) holds the episodes and
executes the calls; this process keeps what the verdicts are made of. Each episode here checks the
arguments, asks the child to run the call, and reads the child's state as raw SQLite bytes into a
local read-only copy, on which hashes, diffs, test queries and grounding queries run. So rollouts,
rewards, the tests.json runner and MCP serving work unchanged on a sandboxed environment, and the
child can change outputs but never a verdict's arithmetic.

The child's life: started from one long-lived thread (``PR_SET_PDEATHSIG`` fires when the thread that
started a child ends, so never from a worker thread), in its own process group that is killed whole
when the environment closes, is collected, or this process exits; stderr kept to its last 16 KiB; the
package copied in with size limits and no links. A call past ``call_seconds`` kills the child (the
call and the open episodes fail as ``internal``); the next episode starts a fresh child.
"""
from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import uuid
import weakref
from pathlib import Path
from typing import Any

from envfactory.envs.runtime import state as st
from envfactory.envs.runtime.environment import (BoundTool, CallRecord, Environment, Episode, ToolResult, _bytes,
                                                 register_sandbox)
from envfactory.envs.runtime.errors import EnvironmentPackageError
from envfactory.envs.runtime.manifest import load_manifest
from envfactory.envs.runtime.package_checks import check_volatile_columns
from envfactory.envs.runtime.readonly import read_only
from envfactory.envs.runtime.snapshot_check import snapshot_problem
from envfactory.envs.sandbox.channel import ChannelError, ParentEnd
from envfactory.envs.sandbox.runner import NOBODY, SandboxLimits

SERVER_MODULE = "envfactory.envs.sandbox.server"
ALLOW_WEAK_VAR = "ENVFACTORY_ALLOW_WEAK_SANDBOX"
MAX_PACKAGE_BYTES = 64 * 1024 * 1024
MAX_PACKAGE_FILES = 2000
STDERR_TAIL = 16 * 1024
ERROR_KINDS = {"unknown_tool", "invalid_arguments", "domain", "internal", "read_only_violation"}

# Serving limits: a long-lived child, bounded per call rather than in total CPU.
SERVING = SandboxLimits(cpu_seconds=0, wall_seconds=60.0, memory_mb=1024)


class SandboxError(EnvironmentPackageError):
    """The child could not be started, or stopped; ``status`` says how (timeout, memory_limit, ...)."""

    def __init__(self, message: str, status: str = "crashed", process: "SandboxProcess | None" = None):
        super().__init__(str(process.package_source) if process else "sandbox", message)
        self.status = status
        self.layers = list(getattr(process, "layers", []) or [])
        self.stderr_tail = process.stderr_tail if process else ""

    def __str__(self) -> str:
        return self.problem


# ---------------------------------------------------------------- the package copy

def copy_package(src: Path, dest: Path, max_bytes: int = MAX_PACKAGE_BYTES, max_files: int = MAX_PACKAGE_FILES) -> None:
    """Copy a package's regular files (never links, devices or pipes) within size limits, readable by
    the child and writable by no one but us."""
    src = Path(src)
    total, files = 0, 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel = Path(dirpath).relative_to(src)
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        target_dir = dest / rel
        target_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(target_dir, 0o755)
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                raise EnvironmentPackageError(str(src), f"{rel / d} is a symbolic link; packages may not hold links")
        for name in filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise EnvironmentPackageError(str(src), f"{rel / name} is a symbolic link; packages may not hold links")
            if not stat.S_ISREG(mode):
                raise EnvironmentPackageError(str(src), f"{rel / name} is not a regular file")
            files += 1
            if files > max_files:
                raise EnvironmentPackageError(str(src), f"holds more than {max_files} files")
            with open(path, "rb") as fh:
                data = fh.read(max_bytes - total + 1)
            total += len(data)
            if total > max_bytes:
                raise EnvironmentPackageError(str(src), f"is larger than {max_bytes >> 20} MiB")
            out = target_dir / name
            out.write_bytes(data)
            os.chmod(out, 0o644)


# ---------------------------------------------------------------- starting children

class _Spawner:
    """Starts every child from one thread that lives as long as the process (see the module doc)."""

    def __init__(self) -> None:
        self._jobs: "queue.Queue[tuple[Any, queue.Queue]]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._lock = threading.Lock()

    def run(self, fn):
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._jobs = queue.Queue()
                self._thread = threading.Thread(target=self._loop, args=(self._jobs,), name="envfactory-sandbox-spawner",
                                                daemon=True)
                self._thread.start()
                self._pid = os.getpid()
        answer: queue.Queue = queue.Queue(1)
        self._jobs.put((fn, answer))
        ok, value = answer.get()
        if not ok:
            raise value
        return value

    @staticmethod
    def _loop(jobs: queue.Queue) -> None:
        while True:
            fn, answer = jobs.get()
            try:
                answer.put((True, fn()))
            except BaseException as exc:  # handed back to the caller
                answer.put((False, exc))


_spawner = _Spawner()
_live: "weakref.WeakSet[SandboxProcess]" = weakref.WeakSet()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _cleanup(proc: subprocess.Popen, channel: ParentEnd, root: Path) -> None:
    _kill_group(proc)
    channel.close()
    shutil.rmtree(root, ignore_errors=True)


@atexit.register
def _kill_all() -> None:
    for p in list(_live):
        p.kill()


class SandboxProcess:
    """One contained child server on a private copy of a package."""

    def __init__(self, package_dir: Path, limits: SandboxLimits):
        self.limits = limits
        self.package_source = package_dir
        self.layers: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="ef-sandbox-"))
        os.chmod(self.root, 0o755)
        self.package, self.work = self.root / "package", self.root / "work"
        self.status, self.detail = "ok", ""
        self._lock = threading.Lock()
        self._seq = 0
        self._stderr = bytearray()
        try:
            copy_package(package_dir, self.package)
            self.work.mkdir(mode=0o700)
            if os.geteuid() == 0:
                os.chown(self.work, NOBODY, NOBODY)
            self._start()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _start(self) -> None:
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        config = {"read_fd": p2c_r, "write_fd": c2p_w, "package": str(self.package), "work": str(self.work),
                  "parent_pid": os.getpid(), "memory_mb": self.limits.memory_mb,
                  "file_size_mb": self.limits.file_size_mb, "open_files": self.limits.open_files,
                  "processes": self.limits.processes, "cpu_seconds": self.limits.cpu_seconds or None,
                  "allow_weak": os.environ.get(ALLOW_WEAK_VAR) == "1"}
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.work), "TMPDIR": str(self.work), "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        try:
            self.proc = _spawner.run(lambda: subprocess.Popen(
                [sys.executable, "-I", "-m", SERVER_MODULE, json.dumps(config)], cwd=self.root, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                pass_fds=(p2c_r, c2p_w), start_new_session=True))
        finally:
            os.close(p2c_r)
            os.close(c2p_w)
        self.channel = ParentEnd(p2c_w, c2p_r)
        threading.Thread(target=self._drain_stderr, args=(self.proc.stderr,), daemon=True,
                         name="envfactory-sandbox-stderr").start()
        self._finalizer = weakref.finalize(self, _cleanup, self.proc, self.channel, self.root)
        _live.add(self)
        hello = self._exchange(None, b"", self.limits.wall_seconds)[0]
        if not hello.get("ok"):
            self.kill()
            raise SandboxError(str(hello.get("error", "the sandbox did not start")), "refused", self)
        self.layers = list(hello.get("layers", []))

    def _drain_stderr(self, pipe) -> None:
        """Keep only the tail: a child printing without end costs us 16 KiB."""
        for chunk in iter(lambda: pipe.read1(1 << 16), b""):
            self._stderr += chunk
            if len(self._stderr) > STDERR_TAIL:
                del self._stderr[:-STDERR_TAIL]

    @property
    def stderr_tail(self) -> str:
        return bytes(self._stderr).decode(errors="replace")[-2000:]

    @property
    def alive(self) -> bool:
        return self.status == "ok"

    def _exchange(self, message: dict | None, blob: bytes, timeout: float) -> tuple[dict, bytes]:
        try:
            return self.channel.request(message, blob, timeout)
        except ChannelError as exc:
            self._ended(exc)
            raise SandboxError(self.detail, self.status, self) from None

    def _ended(self, exc: ChannelError) -> None:
        self.kill()
        code = self.proc.returncode
        if exc.timed_out:
            self.status, self.detail = "timeout", f"still running after {exc} (killed)".replace("after no answer within", "after")
        elif code is not None and code < 0:
            sig = signal.Signals(-code)
            self.status = "cpu_limit" if sig == signal.SIGXCPU else "killed_by_signal"
            self.detail = (f"used more than {self.limits.cpu_seconds} s of CPU" if sig == signal.SIGXCPU else
                           f"killed by {sig.name}" + (" (a crash in native code)" if sig in (signal.SIGSEGV, signal.SIGBUS,
                                                                                            signal.SIGABRT) else ""))
        elif "MemoryError" in self.stderr_tail:
            self.status, self.detail = "memory_limit", f"exceeded {self.limits.memory_mb} MiB"
        else:
            self.status = "crashed"
            self.detail = f"exited with code {code}" + (f" ({exc})" if "went away" not in str(exc) else "")

    def request(self, op: str, blob: bytes = b"", timeout: float | None = None, **fields: Any) -> tuple[dict, bytes]:
        """One request and its answer; SandboxError when the child is gone or misbehaves (it is killed)."""
        with self._lock:
            if not self.alive:
                raise SandboxError(f"the sandbox process had already stopped ({self.detail})", self.status, self)
            self._seq += 1
            answer, data = self._exchange({"op": op, "id": self._seq, **fields}, blob,
                                          timeout or self.limits.wall_seconds)
            if answer.get("id") != self._seq:  # something wrote to the channel besides the server
                self.kill()
                self.status, self.detail = "bad_result", "the sandbox sent a message nobody asked for"
                raise SandboxError(self.detail, self.status, self)
            if answer.get("status") == "memory_limit":
                self.kill()
                self.status, self.detail = "memory_limit", f"exceeded {self.limits.memory_mb} MiB"
                raise SandboxError(self.detail, self.status, self)
            return answer, data

    def kill(self) -> None:
        if self.status == "ok":
            self.status, self.detail = "stopped", "closed"
        self._finalizer()
        _live.discard(self)


# ---------------------------------------------------------------- the environment

class SandboxedEnvironment(Environment):
    """An untrusted package behind a contained child server, with the ``Environment`` contract."""

    sandboxed = True

    def __init__(self, package_dir: Path, limits: SandboxLimits | None = None, restart: bool = True):
        """``restart``: a child that stopped is replaced for the next episode (serving); without it,
        every later episode fails as the first one did (validation)."""
        package_dir = Path(package_dir)
        manifest = load_manifest(package_dir)  # JSON only: nothing of the package runs here
        self.limits = limits or SERVING
        self.restart = restart
        self._process_lock = threading.Lock()
        self.process = self._start(package_dir)
        answer, initial = self.process.request("load")  # SandboxError: it stopped while loading
        if not answer.get("ok"):
            self.process.kill()
            raise EnvironmentPackageError(str(package_dir), str(answer.get("error", "it did not load")))
        self.undeclared = answer.get("undeclared") or {}
        tools = {spec.name: BoundTool(spec, None) for spec in manifest.tools}
        problem = snapshot_problem(_Probe(manifest.name, initial), initial)
        if problem:
            self.process.kill()
            raise EnvironmentPackageError(str(package_dir), f"its initial state is {problem}")
        super().__init__(package_dir, manifest, tools, initial)
        check_volatile_columns(str(package_dir), manifest.volatile_columns, {n: t.columns for n, t in self.tables.items()})

    def _start(self, package_dir: Path) -> SandboxProcess:
        return SandboxProcess(package_dir, self.limits)

    def live_process(self) -> SandboxProcess:
        """The child, restarted (and checked to load the same initial state) if it stopped."""
        with self._process_lock:
            if not self.process.alive and not self.restart:
                raise SandboxError(f"the sandbox process had stopped ({self.process.detail})", self.process.status,
                                   self.process)
            if not self.process.alive:
                process = self._start(self.package_dir)
                answer, initial = process.request("load")
                if not answer.get("ok") or self.hash_of(initial) != self.initial_hash:
                    process.kill()
                    raise EnvironmentPackageError(str(self.package_dir), "it no longer loads as it did")
                self.process = process
            return self.process

    def _scratch(self, data: bytes):
        conn = super()._scratch(data)
        conn.set_authorizer(read_only)  # the schema and views are the package's: read, never write
        return conn

    def diff_states(self, before, after) -> st.StateDiff:
        conn = super(SandboxedEnvironment, self)._scratch(_bytes(before))
        try:
            conn.execute("ATTACH ':memory:' AS other")
            conn.deserialize(_bytes(after), name="other")
            conn.set_authorizer(read_only)
            return st.diff_schemas(conn, self.tables, "main", "other")
        finally:
            conn.close()

    def _give_back(self, conn, undo: bool = False) -> bool:
        return False

    def episode(self, episode_id: str | None = None, state=None, check_outputs: bool = False) -> "SandboxedEpisode":
        return SandboxedEpisode(self, episode_id=episode_id, state=state, check_outputs=check_outputs)

    def close(self) -> None:
        self.process.kill()


class _Probe:
    """Enough of an environment for ``snapshot_problem`` to check bytes before the real one exists."""

    def __init__(self, name: str, initial: bytes):
        self.name, self.initial_state, self.tables = name, initial, {}


class SandboxedEpisode(Episode):
    """An episode whose calls run in the child and whose state is read back as bytes."""

    def __init__(self, env: SandboxedEnvironment, episode_id: str | None = None, state=None, check_outputs: bool = False):
        self.env = env
        self.id = episode_id or uuid.uuid4().hex
        self.check_outputs = check_outputs
        self.calls: list[CallRecord] = []
        self._lock = threading.RLock()
        self._base = env.initial_state if state is None else _bytes(state)
        self._mirror = None
        self._current: bytes | None = self._base
        self._closed = False
        self._process = env.live_process()
        self._process.request("open", b"" if state is None else self._base, episode=self.id,
                              check_outputs=check_outputs)

    # what the rest of the code reads: a read-only copy of the child's current state
    @property
    def conn(self):
        with self._lock:
            data = self._state_bytes()
            if self._mirror is None:
                self._mirror = self.env._scratch(data)
            elif self._mirror_of is not data:
                self._mirror.set_authorizer(None)  # loading bytes is not a statement of the package's
                self._mirror.deserialize(data)
                self._mirror.set_authorizer(read_only)
            self._mirror_of = data
            return self._mirror

    _mirror_of = None

    def _state_bytes(self) -> bytes:
        if self._current is None:
            _, data = self._process.request("state", episode=self.id)  # SandboxError when it stopped
            self._current = data
        return self._current

    def _run(self, tool: BoundTool, arguments: dict[str, Any]) -> ToolResult:
        self._current = None  # whatever the answer, the state is read back before it is used
        try:
            answer, _ = self._process.request("call", episode=self.id, tool=tool.name, arguments=arguments,
                                              timeout=self.env.limits.wall_seconds)
        except SandboxError as exc:
            return self._fail(tool.name, arguments, "internal",
                              f"{tool.name} failed with an internal error: the sandbox stopped it ({exc})")
        r = answer.get("result") if answer.get("ok") else None
        if not isinstance(r, dict) or not isinstance(r.get("ok"), bool):
            return self._fail(tool.name, arguments, "internal",
                              f"{tool.name} failed with an internal error: {answer.get('error', 'no result')}")
        if not r["ok"]:
            kind = r.get("error_kind") if r.get("error_kind") in ERROR_KINDS else "internal"
            return self._fail(tool.name, arguments, kind, str(r.get("error") or f"{tool.name} failed"))
        self.calls.append(CallRecord(tool.name, arguments, True, None, bool(r.get("wrote"))))
        return ToolResult(tool.name, arguments, True, r.get("output"))

    def query(self, sql: str, params=()) -> list[tuple]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()  # the copy is read-only already

    def state_hash(self) -> str:
        with self._lock:
            return st.state_hash(self.conn, self.env.tables)

    def snapshot(self) -> st.Snapshot:
        with self._lock:
            return st.Snapshot(self._state_bytes(), None)

    def diff(self, against=None) -> st.StateDiff:
        with self._lock:
            return self.env.diff_states(self._base if against is None else _bytes(against), self._state_bytes())

    def restore(self, snap: st.Snapshot) -> None:
        problem = snapshot_problem(self.env, snap.data, snap.dirty)
        if problem:
            raise ValueError(f"not a snapshot of {self.env.name}: {problem}")
        with self._lock:
            self._set_state(bytes(snap.data), base=False)

    def reset(self, state=None) -> None:
        with self._lock:
            data = self.env.initial_state if state is None else _bytes(state)
            self._set_state(data, base=True)
            self._base = data
            self.calls.clear()

    def _set_state(self, data: bytes, base: bool) -> None:
        self._current = None
        self._process.request("set_state", data, episode=self.id, base=base)  # SandboxError when it stopped
        self._current = data

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._process.alive:
                try:
                    self._process.request("close", episode=self.id)
                except SandboxError:
                    pass
            if self._mirror is not None:
                self._mirror.close()
                self._mirror = None


def open_sandboxed(package_dir: Path) -> SandboxedEnvironment:
    return SandboxedEnvironment(package_dir)


register_sandbox(open_sandboxed)
