"""Entry point of a one-shot sandbox child (the pyclass importer's introspection and validation):
import our task modules, put on the kernel containment (``contain``), then run the task and write
its result to the result descriptor. The parent reads that result as data; verdicts of SQLite
packages never come from here (see ``remote``)."""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


# HTTP client libraries an imported module may import: urllib3 opens a socket at import (to test
# IPv6); imported here, before the containment, the import works the same everywhere and every
# connection the code then tries is still refused by seccomp.
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
    config = json.loads(os.environ["EF_SANDBOX"])
    out = os.fdopen(int(config["result_fd"]), "w", buffering=1)
    workspace = Path(config["workspace"])
    sys.dont_write_bytecode = True
    # Our modules first, while everything is readable.
    from envfactory.envs.imports import importer  # noqa: F401
    from envfactory.envs.sandbox import contain
    from envfactory.envs.validation import validate  # noqa: F401
    _preimport(request.get("preimport", []))
    readable = [Path(p) for p in (request.get("package"), request.get("path"), request.get("root"),
                                  request.get("scenario")) if p]
    try:
        layers = contain.contain(parent_pid=config["parent_pid"], readable=contain.system_readable() + readable,
                                 writable=[workspace / "work"], memory_mb=config["memory_mb"],
                                 file_size_mb=config["file_size_mb"], open_files=config["open_files"],
                                 processes=config["processes"], allow_weak=config["allow_weak"])
    except contain.ContainmentError as exc:
        out.write(json.dumps({"sandbox_status": "refused", "detail": f"refusing to run untrusted code: {exc}"}) + "\n")
        return 6
    if config.get("cpu_seconds"):
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_seconds"], config["cpu_seconds"] + 1))
    os.chdir(workspace / "work")

    def emit(payload: dict) -> None:
        payload["isolation"] = layers
        out.write(json.dumps(payload, default=str) + "\n")
        out.flush()

    try:
        if request["task"] == "validate":
            payload = validate.child_validate(Path(request["package"]), request.get("strict", False))
        elif request["task"] == "introspect":
            payload = importer.child_introspect(Path(request["path"]), request.get("class_name"), request.get("scenario"),
                                                request.get("root"), request.get("dotted"), request.get("source", "auto"),
                                                request.get("explore", True))
            if "result_file" in payload:  # written in the child's working folder, read by the parent
                payload["result_file"] = f"work/{payload['result_file']}"
        else:
            payload = {"error": f"unknown task {request['task']!r}"}
        emit(payload)
        return 0
    except MemoryError:
        emit({"sandbox_status": "memory_limit", "detail": "the code ran out of its memory limit"})
        return 4
    except BaseException as exc:  # report, never hang
        emit({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]})
        return 5


if __name__ == "__main__":
    sys.exit(main())
