"""Entry point of a sandboxed child: install the guard, then run the requested task.

Nothing untrusted is imported before ``install_guard`` runs; audit hooks cannot be removed.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

_BLOCKED_EVENTS = {
    "socket.connect": "network access", "socket.bind": "network access", "socket.getaddrinfo": "network access",
    "socket.sendto": "network access", "socket.gethostbyname": "network access",
    "subprocess.Popen": "starting a process", "os.system": "starting a process", "os.fork": "starting a process",
    "os.forkpty": "starting a process", "os.exec": "starting a process", "os.posix_spawn": "starting a process",
    "os.spawn": "starting a process", "os.kill": "signalling a process", "ctypes.dlopen": "loading a native library",
}
_PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink", "os.link",
                "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile"}


class SandboxViolation(BaseException):
    """Derives from BaseException so untrusted `except Exception` blocks cannot swallow it."""


def install_guard(workspace: Path, result_fd: int) -> None:
    workspace = workspace.resolve()
    state = {"violation": None}

    def inside(path) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor, granted before the guard
        try:
            p = Path(os.fsdecode(path))
            p = (Path.cwd() / p) if not p.is_absolute() else p
            p = Path(os.path.realpath(p))
        except (TypeError, ValueError):
            return False
        return p == workspace or workspace in p.parents

    def hook(event: str, args: tuple) -> None:
        what = _BLOCKED_EVENTS.get(event)
        if what:
            _violate(state, f"{what} ({event}{' ' + repr(args[1]) if event == 'socket.connect' and len(args) > 1 else ''})")
        if event == "open" and args:
            path, mode, flags = (list(args) + [None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
            if writing and path is not None and not inside(path):
                _violate(state, f"writing outside the workspace ({os.fsdecode(path) if not isinstance(path, int) else path})")
        elif event in _PATH_EVENTS and args and not all(inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
            _violate(state, f"changing files outside the workspace ({event} {args[0]!r})")

    sys.addaudithook(hook)
    _STATE.update(state=state)


_STATE: dict = {}


def _violate(state: dict, detail: str) -> None:
    if state["violation"] is None:
        state["violation"] = detail
    raise SandboxViolation(detail)


# HTTP client libraries an imported module may import: urllib3 binds a socket at import (to test
# IPv6), which the guard refuses; imported here, before the guard, the import works and every
# connection the code then tries is still refused.
_PREIMPORTABLE = {"requests", "httpx", "urllib3", "aiohttp"}


def _preimport(names: list[str]) -> None:
    import importlib
    for name in names:
        if name in _PREIMPORTABLE:
            try:
                importlib.import_module(name)
            except ImportError:
                pass  # not installed: the module's own import reports it


def main() -> int:
    request = json.loads(sys.argv[1])
    result_fd = int(os.environ["EF_RESULT_FD"])
    out = os.fdopen(result_fd, "w", buffering=1)
    workspace = Path(os.environ["EF_WORKSPACE"])
    sys.dont_write_bytecode = True
    # Import what the task needs before the guard (these are trusted modules).
    from envfactory.envs.validation import validate  # noqa: F401
    import socket
    try:  # inside a fresh network namespace only the loopback interface exists
        isolation = ["network namespace"] if [n for _, n in socket.if_nameindex()] == ["lo"] else []
    except OSError:
        isolation = []
    _preimport(request.get("preimport", []))
    install_guard(workspace, result_fd)

    def emit(payload: dict) -> None:
        payload["isolation"] = isolation
        out.write(json.dumps(payload, default=str) + "\n")
        out.flush()

    try:
        if request["task"] == "validate":
            payload = validate.child_validate(Path(request["package"]), request.get("strict", False))
        elif request["task"] == "introspect":
            from envfactory.envs.imports import importer
            payload = importer.child_introspect(Path(request["path"]), request.get("class_name"), request.get("scenario"),
                                                request.get("root"), request.get("dotted"), request.get("source", "auto"),
                                                request.get("explore", True))
        else:
            payload = {"error": f"unknown task {request['task']!r}"}
        violation = _STATE["state"]["violation"]
        if violation:  # untrusted code caught the refusal and carried on: still a violation
            emit({"sandbox_status": "blocked", "detail": violation})
            return 3
        emit(payload)
        return 0
    except SandboxViolation as exc:
        emit({"sandbox_status": "blocked", "detail": str(exc)})
        return 3
    except MemoryError:
        emit({"sandbox_status": "memory_limit", "detail": "the code ran out of its memory limit"})
        return 4
    except BaseException as exc:  # report, never hang
        violation = _STATE.get("state", {}).get("violation")
        if violation:
            emit({"sandbox_status": "blocked", "detail": violation})
            return 3
        emit({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]})
        return 5


if __name__ == "__main__":
    sys.exit(main())
