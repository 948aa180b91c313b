"""What the sandbox costs, as ratios against the same work on the same package in this process:
a read call, a write call with its undo (a fresh episode each time), the end of a rollout (state hash
and diff after a few writes), and start-up (load vs a contained child server that loaded it)."""
from __future__ import annotations

import time
from typing import Any

from envfactory.envs.runtime.environment import Environment
from envfactory.envs.sandbox.remote import SandboxedEnvironment


def _per_op(fn, n: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def _cases(env) -> dict[str, Any]:
    ep = env.episode()

    def read() -> None:
        assert ep.call("get_book", {"book_id": 7}).ok

    def write_and_undo() -> None:
        with env.episode() as e:
            assert e.call("checkout_book", {"member_id": 1, "book_id": 3}).ok

    def rollout_end() -> None:
        with env.episode() as e:
            e.call("checkout_book", {"member_id": 1, "book_id": 3})
            e.call("place_hold", {"member_id": 2, "book_id": 5})
            e.call("get_book", {"book_id": 3})
            e.state_hash()
            e.diff()

    return {"read_call": read, "write_and_undo": write_and_undo, "rollout_end": rollout_end}


def bench_sandbox(n: int = 300, env_name: str = "library") -> dict[str, Any]:
    trusted = Environment.load(env_name)
    started = time.perf_counter()
    sandboxed = SandboxedEnvironment(trusted.package_dir)
    start_sandboxed = time.perf_counter() - started
    try:
        out: dict[str, Any] = {"layers": ", ".join(sandboxed.process.layers)}
        base, boxed = _cases(trusted), _cases(sandboxed)
        for name in base:
            t_in = _per_op(base[name], n)
            t_box = _per_op(boxed[name], max(20, n // 5))
            out[name] = {"in_process_us": round(t_in * 1e6, 1), "sandboxed_us": round(t_box * 1e6, 1),
                         "ratio": round(t_box / t_in, 1)}
        from envfactory.envs.runtime import environment as runtime
        runtime._initial_cache.clear()
        started = time.perf_counter()
        Environment.load(trusted.package_dir, trust=True)
        start_in = time.perf_counter() - started
        out["start_up"] = {"in_process_ms": round(start_in * 1e3, 1), "sandboxed_ms": round(start_sandboxed * 1e3, 1),
                           "ratio": round(start_sandboxed / start_in, 1)}
        return out
    finally:
        sandboxed.close()


if __name__ == "__main__":
    import json
    print(json.dumps(bench_sandbox(), indent=1))
