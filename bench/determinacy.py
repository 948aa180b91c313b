"""Benchmark of task acceptance on the bundled catalog, offline: the share of sampled tasks that are
accepted, the chains dropped or redrawn for lack of a selector, the tasks rejected as undetermined,
and the CPU per accepted task (sampling, queries, checks, rollouts, verification; one process).

Each environment runs through the QueryGen graph exactly as ``envfactory run`` does (``n`` slots,
no record store). Absolute CPU on a shared machine is noise; compare runs of the same command.

    python -m envfactory.bench.determinacy [--n 16] [--rollouts 2] [--envs library,travel]
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any

CATALOG = ("commerce", "communication", "devtools", "finance", "health", "library", "productivity", "travel")


def measure(envs: list[str], n: int, rollouts: int = 2, seed: int = 0) -> dict[str, Any]:
    from envfactory.graphs.querygen import QueryGenContext, make_graph

    graph = make_graph()
    ctx = QueryGenContext(rollouts=rollouts)
    for name in envs:  # warm-up outside the timed part: tool graphs confirmed, packages loaded
        graph.invoke({"envs": [name], "n": 1, "seed": 10_000}, context=ctx)
    totals: Counter = Counter()
    reasons: Counter = Counter()
    per_env = {}
    start = time.process_time()
    for name in envs:
        s = graph.invoke({"envs": [name], "n": n, "seed": seed}, context=ctx)["summary"]
        per_env[name] = {k: s.get(k) for k in ("chains", "accepted", "rejected", "discarded_chains",
                                                "selector_redrawn", "selector_dropped", "undetermined")}
        for k in ("chains", "accepted", "rejected", "discarded_chains", "selector_redrawn", "selector_dropped",
                  "undetermined"):
            totals[k] += s.get(k) or 0
        reasons.update(s.get("rejected_by_reason") or {})
    cpu = time.process_time() - start
    return {"envs": len(envs), "slots": n * len(envs), "tasks": totals["chains"], "accepted": totals["accepted"],
            "accepted_fraction": round(totals["accepted"] / max(totals["chains"], 1), 3),
            "discarded_chains": totals["discarded_chains"], "selector_redrawn": totals["selector_redrawn"],
            "selector_dropped": totals["selector_dropped"], "undetermined": totals["undetermined"],
            "rejected_by_reason": dict(reasons), "cpu_s": round(cpu, 2),
            "cpu_ms_per_accepted": round(1000 * cpu / max(totals["accepted"], 1), 1), "per_env": per_env}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16, help="task slots per environment")
    p.add_argument("--rollouts", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--envs", default=",".join(CATALOG))
    args = p.parse_args(argv)
    print(json.dumps(measure(args.envs.split(","), args.n, args.rollouts, args.seed), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
