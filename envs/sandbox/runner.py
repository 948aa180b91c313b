"""Run untrusted Python in a subprocess with limits.

Layers, outermost first: a wall-clock timeout that kills the whole process group; rlimits on CPU
time, address space, file size and open files; a new network namespace when the kernel allows
it; dropping root to ``nobody`` (with a process-count limit) when the interpreter is readable by
that user; and, inside the child, an audit hook installed before any untrusted import that
refuses sockets, new processes, foreign libraries and writes outside the workspace. The result
says exactly what happened.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

CHILD_MODULE = "envfactory.envs.sandbox.child"
NOBODY = 65534
CLONE_NEWNET = 0x40000000


class SandboxLimits(BaseModel):
    cpu_seconds: int = 30
    wall_seconds: float = 60.0
    memory_mb: int = 1024
    file_size_mb: int = 64
    open_files: int = 256
    processes: int = 64


class SandboxResult(BaseModel):
    status: Literal["ok", "timeout", "cpu_limit", "memory_limit", "killed_by_signal", "crashed", "blocked",
                    "bad_result"]
    detail: str = ""
    exit_code: int | None = None
    signal: str | None = None
    duration_s: float = 0.0
    isolation: list[str] = []            # which layers were active
    stderr_tail: str = ""
    payload: dict[str, Any] | None = None


def _world_traversable(path: Path) -> bool:
    """Can an unprivileged user reach (and read) ``path``?"""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def _can_drop_root() -> bool:
    import envfactory
    pkg_dirs = [Path(p) for p in envfactory.__path__] + [Path(__file__).resolve().parent]
    return os.geteuid() == 0 and all(_world_traversable(p) for p in [Path(sys.executable).resolve().parent, *pkg_dirs])


def _preexec(limits: SandboxLimits, drop_root: bool, result: dict) -> Any:
    def setup() -> None:
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb, limits.file_size_mb * mb))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.unshare(CLONE_NEWNET)  # not permitted everywhere; the audit hook still refuses sockets
        except OSError:
            pass
        if drop_root:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
    return setup


def run_sandboxed(request: dict[str, Any], workspace: Path, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``envfactory.envs.sandbox.child`` on ``request`` with ``workspace`` as its only writable place."""
    limits = limits or SandboxLimits()
    workspace = Path(workspace).resolve()
    drop_root = _can_drop_root()
    if drop_root:
        for p in [workspace, *workspace.rglob("*")]:
            os.chown(p, NOBODY, NOBODY)
    read_fd, write_fd = os.pipe()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workspace), "TMPDIR": str(workspace), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "EF_RESULT_FD": str(write_fd),
           "EF_WORKSPACE": str(workspace)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-I", "-m", CHILD_MODULE, json.dumps(request)], cwd=workspace, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            pass_fds=(write_fd,), start_new_session=True,
                            preexec_fn=_preexec(limits, drop_root, {}))
    os.close(write_fd)
    timed_out = False
    try:
        _, stderr = proc.communicate(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        _, stderr = proc.communicate()
    _kill_group(proc)  # nothing the child started may outlive it
    with os.fdopen(read_fd, "rb") as fh:
        raw = fh.read()
    duration = time.perf_counter() - started
    isolation = ["rlimits", "process-group kill", "audit-hook guard"] + (["uid nobody + nproc limit"] if drop_root else [])
    tail = stderr.decode(errors="replace")[-2000:]
    payload = _last_json(raw)
    if payload and payload.get("isolation"):
        isolation += payload.pop("isolation")
    base = dict(duration_s=round(duration, 3), isolation=isolation, stderr_tail=tail, exit_code=proc.returncode)
    if timed_out:
        return SandboxResult(status="timeout", detail=f"still running after {limits.wall_seconds:g} s wall clock; killed", **base)
    if payload is not None and payload.get("sandbox_status") in ("blocked", "memory_limit"):
        return SandboxResult(status=payload["sandbox_status"], detail=payload.get("detail", ""), payload=payload, **base)
    if proc.returncode is not None and proc.returncode < 0:
        sig = signal.Signals(-proc.returncode)
        status = "cpu_limit" if sig == signal.SIGXCPU else "killed_by_signal"
        detail = (f"used more than {limits.cpu_seconds} s of CPU" if status == "cpu_limit"
                  else f"killed by {sig.name}" + (" (a crash in native code)" if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT) else ""))
        return SandboxResult(status=status, detail=detail, signal=sig.name, payload=payload, **base)
    if payload is None:
        if "MemoryError" in tail:
            return SandboxResult(status="memory_limit", detail=f"exceeded {limits.memory_mb} MiB", **base)
        return SandboxResult(status="crashed", detail=f"exited with code {proc.returncode} before reporting a result", **base)
    if proc.returncode != 0:
        error = payload.get("error")  # the child's own account of what went wrong
        detail = f"exited with code {proc.returncode}" + (f": {error}" if error else "")
        return SandboxResult(status="crashed", detail=detail, payload=payload, **base)
    return SandboxResult(status="ok", payload=payload, **base)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_json(raw: bytes) -> dict[str, Any] | None:
    for line in reversed(raw.decode(errors="replace").splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def new_workspace(prefix: str = "ef-sandbox-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
