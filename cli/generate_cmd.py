"""``envfactory generate``: QueryGen over environments into a resumable record store."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from envfactory.cli.arguments import non_negative_int, positive_int, store_file
from envfactory.cli.interrupt import INTERRUPTED_EXIT_CODE, stop_on_ctrl_c

NOT_DONE_EXIT_CODE = 75  # EX_TEMPFAIL: some tasks failed for a passing reason (the model endpoint); run again


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from envfactory.graphs.querygen import QueryGenContext, make_graph
    workers = args.workers
    if args.ray_address and not on_ray_requested(args):
        print("envfactory: --ray-address needs --executor ray", file=sys.stderr)
        return 2
    if on_ray_requested(args):
        try:
            import ray  # noqa: F401
        except ImportError:
            print("envfactory: --executor ray and --workers run on Ray, which is not installed: "
                  "pip install 'envfactory[ray]' (or leave both out to run in this process)", file=sys.stderr)
            return 2
    from envfactory.envs.runtime.errors import EnvironmentPackageError
    from envfactory.envs.runtime.packages import as_catalog_names
    try:
        args.env = as_catalog_names(args.env)  # package folders (an import's output) resolve by name from here on
    except EnvironmentPackageError as exc:
        print(f"envfactory: {exc}", file=sys.stderr)
        return 2
    from envfactory.envs.runtime.workspace import current_workspace
    store = Path(args.store) if args.store else current_workspace().ensure().store_path
    ctx = QueryGenContext(mode=args.mode, rollouts=args.rollouts, store_path=str(store), workers=workers,
                          executor=args.executor, ray_address=args.ray_address)
    graph = make_graph()
    desc = "trajectories (Ray" + (f", {workers} actors)" if workers else ")") if on_ray_requested(args) else "trajectories"
    bar = tqdm(total=args.n, desc=desc, unit="task", disable=args.json, file=sys.stderr)
    final, resumed = {}, 0
    with stop_on_ctrl_c("the chains") as stop:
        for mode, chunk in graph.stream({"envs": args.env, "n": args.n, "seed": args.seed, "max_envs": args.max_envs},
                                        context=ctx, config={"max_concurrency": args.concurrency, "configurable": {"stop": stop}},
                                        stream_mode=["updates", "values"]):
            if mode == "values":
                final = chunk
            elif chunk.get("process_chain"):
                slot = chunk["process_chain"]  # one slot: a new record, a task resumed as done, no chain, or not run
                resumed += slot.get("skipped", 0)
                bar.update(len(slot.get("record_keys", [])) + slot.get("skipped", 0) + slot.get("empty_slots", 0)
                           + slot.get("not_done", 0))
                if resumed:
                    bar.set_postfix_str(f"resumed {resumed}")
    bar.close()
    summary = final.get("summary", {})
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary.get('accepted', 0)} accepted, {summary.get('rejected', 0)} rejected "
              f"{summary.get('rejected_by_reason') or ''}, {summary.get('skipped_as_done', 0)} already done, "
              f"{summary.get('discarded_chains', 0)} chains discarded while sampling "
              f"({summary.get('selector_dropped', 0)} for lack of a selector; "
              f"{summary.get('selector_redrawn', 0)} chains redrawn to an element the user can single out), "
              f"{summary.get('undetermined', 0)} tasks rejected as undetermined; mean pass rate "
              f"{summary.get('mean_pass_rate')}; records in {store}")
    if summary.get("not_done"):
        print(f"envfactory: {summary['not_done']} tasks not done: the model endpoint kept failing after its retries; "
              "run the same command again to retry them", file=sys.stderr)
    if stop.is_set():
        print(f"envfactory: stopped before {summary.get('slots_not_run', 0)} tasks started; run the same command "
              "again to resume", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    return NOT_DONE_EXIT_CODE if summary.get("not_done") else 0


def on_ray_requested(args) -> bool:
    return args.executor == "ray" or args.workers > 0


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate verified trajectories (QueryGen) into a record store")
    p.add_argument("env", nargs="+", help="environment names (bundled, the workspace's catalog) or package folders (named like their environment)")
    p.add_argument("--n", type=positive_int, default=10, help="tasks to generate (finished ones count on resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=["single", "conv"], default="single")
    p.add_argument("--rollouts", type=positive_int, default=2)
    p.add_argument("--max-envs", type=positive_int, default=1, help="environments per chain")
    p.add_argument("--concurrency", type=positive_int, default=8, help="chains processed at once")
    p.add_argument("--workers", type=non_negative_int, default=0,
                   help="Ray actors running chains, each many at once (implies --executor ray; with --executor ray "
                        "0 means one per CPU of the cluster); one per core pays off for long runs whose chains wait "
                        "on a model at high concurrency (starting Ray costs seconds); 0: threads in this process")
    p.add_argument("--executor", choices=["threads", "ray"], default="threads",
                   help="ray: run the chains on Ray async actors (one per CPU of the cluster, or --workers of them); "
                        "needs the ray extra")
    p.add_argument("--ray-address", default=None,
                   help="with --executor ray: the cluster to join ('auto' for the one `ray start --head` runs here, "
                        "ray://HOST:10001 for a remote one); default: a local Ray instance on loopback")
    p.add_argument("--store", type=store_file, default=None, help="the record store (default: the workspace's records.sqlite)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_generate)
