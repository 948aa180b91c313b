"""Entry point of a sandbox child server (``python -I -m envfactory.envs.sandbox.server CONFIG``).

It imports our runtime, puts on the kernel containment (``contain``), then loads the package and
executes what the parent asks, one request at a time: open, call, read state, set state, close. It
only executes calls and returns their outputs and the raw state; tests, comparisons, hashes and
verdicts are the parent's. Nothing of the package is read before the containment is on.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Our own modules, imported before the containment (the interpreter may be unreadable afterwards).
import envfactory.envs.imports  # noqa: F401  (the pyclass backend)
from envfactory.envs.runtime.environment import Environment
from envfactory.envs.runtime.errors import EnvironmentPackageError
from envfactory.envs.runtime.state import Snapshot
from envfactory.envs.sandbox import contain
from envfactory.envs.sandbox.channel import ChildEnd

class Server:
    def __init__(self, package: Path):
        self.package = package
        self.env: Environment | None = None
        self.episodes: dict[str, object] = {}

    def handle(self, msg: dict, blob: bytes) -> tuple[dict, bytes]:
        op = msg.get("op")
        if op == "load":
            return self.load()
        if self.env is None:
            return {"ok": False, "error": "the package is not loaded"}, b""
        eid = str(msg.get("episode", ""))
        if op == "open":
            ep = self.env.episode(episode_id=eid, state=blob or None, check_outputs=bool(msg.get("check_outputs")))
            self.episodes[eid] = ep
            return {"ok": True}, b""
        ep = self.episodes.get(eid)
        if ep is None:
            return {"ok": False, "error": f"no episode {eid!r}"}, b""
        if op == "call":
            r = ep.call(str(msg.get("tool")), msg.get("arguments") or {})
            wrote = bool(ep.calls and ep.calls[-1].wrote)
            try:
                json.dumps(r.output, allow_nan=False)
                output = r.output
            except (TypeError, ValueError) as exc:
                return {"ok": True, "result": {"ok": False, "output": None, "error_kind": "internal", "wrote": False,
                                               "error": f"{r.tool} returned a value that is not JSON: {exc}"}}, b""
            return {"ok": True, "result": {"ok": r.ok, "output": output, "error": r.error, "error_kind": r.error_kind,
                                           "wrote": wrote}}, b""
        if op == "state":
            return {"ok": True}, ep.conn.serialize()
        if op == "set_state":
            if msg.get("base"):
                ep.reset(blob or None)
            else:
                ep.restore(Snapshot(blob, None))
            return {"ok": True}, b""
        if op == "close":
            self.episodes.pop(eid, None)
            ep.close()
            return {"ok": True}, b""
        return {"ok": False, "error": f"unknown operation {op!r}"}, b""

    def load(self) -> tuple[dict, bytes]:
        try:
            self.env = Environment.load(self.package, trust=True)  # trusted here: this process is the sandbox
        except EnvironmentPackageError as exc:
            return {"ok": False, "stage": "import", "error": exc.problem}, b""
        except MemoryError:
            return {"ok": False, "stage": "import", "status": "memory_limit", "error": "ran out of its memory limit"}, b""
        except BaseException as exc:
            return {"ok": False, "stage": "import", "error": f"{type(exc).__name__}: {exc}"}, b""
        from envfactory.envs.validation.validate import undeclared_tools
        kind, extra = undeclared_tools(self.env)
        return {"ok": True, "undeclared": {"kind": kind, "names": extra}}, self.env.initial_state


def main() -> int:
    config = json.loads(sys.argv[1])
    channel = ChildEnd(config["read_fd"], config["write_fd"])
    package, work = Path(config["package"]), Path(config["work"])
    sys.dont_write_bytecode = True
    import envfactory.envs.validation.validate  # noqa: F401  (undeclared_tools, before the containment)
    try:
        layers = contain.contain(parent_pid=config["parent_pid"], readable=contain.system_readable() + [package],
                                 writable=[work], memory_mb=config["memory_mb"], file_size_mb=config["file_size_mb"],
                                 open_files=config["open_files"], processes=config["processes"],
                                 allow_weak=config["allow_weak"])
    except contain.ContainmentError as exc:
        channel.send({"ok": False, "fatal": True, "error": f"refusing to run untrusted code: {exc}"})
        return 6
    if config.get("cpu_seconds"):
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_seconds"], config["cpu_seconds"] + 1))
    os.chdir(work)
    server = Server(package)
    channel.send({"ok": True, "layers": layers})
    while True:
        received = channel.receive()
        if received is None:
            return 0  # the parent closed the channel
        msg, blob = received
        try:
            answer, data = server.handle(msg, blob)
        except MemoryError:
            answer, data = {"ok": False, "status": "memory_limit", "error": "ran out of its memory limit"}, b""
        except BaseException as exc:  # a tool that raised SystemExit, a bad state blob ...
            answer, data = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}, b""
        answer["id"] = msg.get("id")
        channel.send(answer, data)


if __name__ == "__main__":
    sys.exit(main())
