"""One-shot sandbox children, and the limits and results every sandbox child shares.

A one-shot child (``child``) puts the same kernel containment on itself as the child servers
(``contain``); here: a CPU rlimit, a wall clock that kills its whole process group, and its result
and stderr read from size-bounded files after it ended. The result says exactly what happened.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

CHILD_MODULE = "envfactory.envs.sandbox.child"
NOBODY = 65534


class SandboxLimits(BaseModel):
    cpu_seconds: int = 30
    wall_seconds: float = 60.0
    memory_mb: int = 1024
    file_size_mb: int = 64
    open_files: int = 256
    processes: int = 64


class SandboxResult(BaseModel):
    status: Literal["ok", "timeout", "cpu_limit", "memory_limit", "killed_by_signal", "crashed", "blocked",
                    "bad_result", "refused"]
    detail: str = ""
    exit_code: int | None = None
    signal: str | None = None
    duration_s: float = 0.0
    isolation: list[str] = []            # which layers were active
    stderr_tail: str = ""
    payload: dict[str, Any] | None = None


def run_sandboxed(request: dict[str, Any], workspace: Path, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``envfactory.envs.sandbox.child`` on ``request``; ``workspace/work`` is its only writable place.
    Its result and its stderr go to files (bounded by its file-size limit) read after it ended, so no
    size of either can block it or us."""
    limits = limits or SandboxLimits()
    workspace = Path(workspace).resolve()
    os.chmod(workspace, 0o755)
    work = workspace / "work"
    work.mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(work, NOBODY, NOBODY)
    result_file = tempfile.TemporaryFile()
    stderr_file = tempfile.TemporaryFile()
    config = {"result_fd": result_file.fileno(), "workspace": str(workspace), "parent_pid": os.getpid(),
              "memory_mb": limits.memory_mb, "file_size_mb": limits.file_size_mb, "open_files": limits.open_files,
              "processes": limits.processes, "cpu_seconds": limits.cpu_seconds, "allow_weak": os.environ.get("ENVFACTORY_ALLOW_WEAK_SANDBOX") == "1"}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "EF_SANDBOX": json.dumps(config)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-I", "-m", CHILD_MODULE, json.dumps(request)], cwd=workspace, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_file,
                            pass_fds=(result_file.fileno(),), start_new_session=True)
    timed_out = False
    try:
        proc.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_group(proc)  # nothing the child started may outlive it
    proc.wait()
    duration = time.perf_counter() - started
    raw = _tail(result_file, 1 << 20)
    tail = _tail(stderr_file, 2000).decode(errors="replace")
    payload = _last_json(raw)
    isolation = ["process-group kill"]
    if payload and payload.get("isolation"):
        isolation += payload.pop("isolation")
    base = dict(duration_s=round(duration, 3), isolation=isolation, stderr_tail=tail, exit_code=proc.returncode)
    if timed_out:
        return SandboxResult(status="timeout", detail=f"still running after {limits.wall_seconds:g} s wall clock; killed", **base)
    if payload is not None and payload.get("sandbox_status") in ("memory_limit", "refused"):
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


def _tail(fh, limit: int) -> bytes:
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - limit))
    data = fh.read()
    fh.close()
    return data


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
