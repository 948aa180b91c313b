"""``envfactory generate``: QueryGen over environments into a resumable record store."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from envfactory.graphs.querygen import QueryGenContext, make_graph
    ctx = QueryGenContext(mode=args.mode, rollouts=args.rollouts, store_path=str(Path(args.store)))
    graph = make_graph()
    bar = tqdm(total=args.n, desc="trajectories", unit="task", disable=args.json, file=sys.stderr)
    final = {}
    for mode, chunk in graph.stream({"envs": args.env, "n": args.n, "seed": args.seed, "max_envs": args.max_envs},
                                    context=ctx, config={"max_concurrency": args.concurrency},
                                    stream_mode=["updates", "values"]):
        if mode == "updates":
            if "sample_chains" in chunk:
                bar.update(chunk["sample_chains"].get("skipped", 0))
                bar.set_postfix_str(f"resumed {chunk['sample_chains'].get('skipped', 0)}")
            if "process_chain" in chunk:
                bar.update(len(chunk["process_chain"].get("records", [])))
        else:
            final = chunk
    bar.close()
    summary = final.get("summary", {})
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary.get('accepted', 0)} accepted, {summary.get('rejected', 0)} rejected "
              f"{summary.get('rejected_by_reason') or ''}, {summary.get('skipped_as_done', 0)} already done, "
              f"{summary.get('discarded_chains', 0)} chains discarded while sampling; mean pass rate "
              f"{summary.get('mean_pass_rate')}; records in {args.store}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate verified trajectories (QueryGen) into a record store")
    p.add_argument("env", nargs="+", help="bundled environment names")
    p.add_argument("--n", type=int, default=10, help="tasks to generate (finished ones count on resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=["single", "conv"], default="single")
    p.add_argument("--rollouts", type=int, default=2)
    p.add_argument("--max-envs", type=int, default=1, help="environments per chain")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--store", default="out/records.sqlite")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_generate)
