"""``envfactory run``: the main job, end to end on the bundled corpus and catalog, offline by default.

synthesize an environment for every service of the bundled API corpus (EnvGen: research, code,
tests, sandboxed validation) -> validate the bundled catalog -> sample chains -> QueryGen (queries,
rollouts, verification) over both into a resumable record store -> summary.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from envfactory.cli.arguments import positive_int
from envfactory.cli.interrupt import INTERRUPTED_EXIT_CODE, stop_on_ctrl_c


def _validate_all(names: list[str], show: bool) -> list[dict]:
    from tqdm import tqdm

    from envfactory.envs.validation.validate import validate_package
    rows = []
    for name in tqdm(names, desc="validating environments (sandboxed)", disable=not show, file=sys.stderr):
        report = validate_package(name)
        rows.append({"env": name, "domain": report.domain, "tools": report.tools, "tests": f"{report.tests_passed}/{report.tests_total}",
                     "coverage": f"{report.paths_covered}/{report.paths_total}", "verdict": report.verdict,
                     "line": report.verdict_line})
    return rows


def _synthesize_corpus(ws, show: bool, concurrency: int) -> list[dict]:
    """EnvGen over every bundled corpus service; accepted packages land in the workspace's catalog."""
    from envfactory.cli.synth_cmd import synthesize_batch
    from envfactory.data.corpus import default_corpus
    from envfactory.graphs.envgen import EnvGenContext
    corpus = default_corpus()
    items = [{"target": corpus.spec_for(s).title, "name": s} for s in corpus.services]
    ctx = EnvGenContext(catalog_dir=str(ws.catalog_dir), workspace_dir=str(ws.envgen_dir))
    return synthesize_batch(items, ctx, ws.envgen_dir / "checkpoints.sqlite", concurrency, show)


def _export_all(store, out: Path) -> dict[str, int]:
    """Every accepted record in every trainer format (rows per format; each row checked)."""
    from envfactory.data.exports import export_jsonl
    from envfactory.data.exports.verl import write_verl
    records = list(store.query(status="accepted"))
    counts = {fmt: export_jsonl(records, fmt, out, "envfactory")["rows"] for fmt in ("openai", "sharegpt", "alpaca", "trl")}
    if records:
        counts["verl"] = sum(write_verl(records, out / "verl", "envfactory")["rows"].values())
    return counts


def _tier_line() -> str:
    from envfactory.agents.models import ModelSettings
    configured = {role: cfg.model for role, cfg in ModelSettings.load().roles.items() if cfg.model}
    if not configured:
        return "offline tiers (corpus research, skeleton code, template queries, rule-based solver rollouts): no model configured"
    return "models for " + ", ".join(f"{r}={m}" for r, m in sorted(configured.items())) + "; offline tiers for the other roles"


def cmd_run(args) -> int:
    from tqdm import tqdm

    from envfactory.envs import catalog_names
    from envfactory.envs.runtime.workspace import current_workspace
    from envfactory.graphs.querygen import QueryGenContext, make_graph
    show = not args.json
    started = time.perf_counter()
    ws = current_workspace().ensure()  # synthesized packages in its catalog resolve by name in every later command
    synthesized = [] if args.skip_synth or args.envs else _synthesize_corpus(ws, show, args.synth_concurrency)
    if show and synthesized:
        print(f"\n{'synthesized env':<22}{'status':<10}{'attempts':>9}{'tests':>9}  tiers")
        for r in synthesized:
            tiers = ", ".join(f"{k}={v}" for k, v in sorted((r.get("tiers") or {}).items()))
            print(f"{Path(r.get('package') or r['target']).name:<22}{r['status'] or '?':<10}{r.get('attempts', 0):>9}"
                  f"{r.get('tests', '-'):>9}  {tiers or r.get('reason')}")
    made = [Path(r["package"]).name for r in synthesized if r["status"] == "accepted"]
    from envfactory.envs.runtime.trust import is_trusted
    for r in synthesized:
        if r["status"] == "accepted" and not is_trusted(Path(r["package"])) and show:
            # model-written code runs in-process only once the user trusts it; until then, in the sandbox
            print(f"{Path(r['package']).name}: not trusted, its trajectories run in the sandbox "
                  f"(`envfactory envs trust {r['package']}` after review runs it in-process)")
    from envfactory.envs.runtime.packages import as_catalog_names
    names = as_catalog_names(args.envs) if args.envs else catalog_names()
    validation = _validate_all(names, show)
    if show:
        print(f"\n{'env':<15}{'domain':<20}{'tools':>6}{'tests':>9}{'coverage':>10}  verdict")
        for r in validation:
            print(f"{r['env']:<15}{r['domain']:<20}{r['tools']:>6}{r['tests']:>9}{r['coverage']:>10}  {r['verdict']}")
    good = [r["env"] for r in validation if r["verdict"] == "PASS"] + made
    graph = make_graph()
    ctx = QueryGenContext(mode=args.mode, rollouts=args.rollouts, store_path=str(ws.store_path))
    per_env = {}
    with stop_on_ctrl_c("the trajectories") as stop:
        for name in tqdm(good, desc="generating verified trajectories", disable=not show, file=sys.stderr):
            result = graph.invoke({"envs": [name], "n": args.n, "seed": args.seed}, context=ctx,
                                  config={"max_concurrency": args.concurrency, "configurable": {"stop": stop}})
            per_env[name] = result["summary"]
            if stop.is_set():
                break
    if stop.is_set():  # the exports would be partial: the rerun that finishes the trajectories writes them
        print("envfactory: stopped; finished trajectories are stored, run the same command again to resume",
              file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    from envfactory.data.store import RecordStore
    store = RecordStore(ws.store_path)
    exports = _export_all(store, ws.exports_dir)
    summary = {"synthesized": len(made), "synthesis_targets": len(synthesized), "validated": len(validation),
               "passed_validation": len(good) - len(made), "per_env": per_env,
               "workspace": str(ws.root), "store": str(ws.store_path), "records": store.counts(), "exports": exports, "seconds": round(time.perf_counter() - started, 1),
               "tier": _tier_line()}
    not_done = sum(s.get("not_done", 0) for s in per_env.values())
    if not_done:
        summary["not_done"] = not_done
    if args.json:
        print(json.dumps({"validation": validation, "summary": summary}, indent=2))
    else:
        print(f"\n{'env':<22}{'chains':>7}{'accepted':>9}{'rejected':>9}{'resumed':>8}{'discarded':>10}"
              f"{'no selector':>12}{'redrawn':>8}{'undetermined':>13}  pass rate  rejected by reason")
        for name, s in per_env.items():
            rate = "-" if s["mean_pass_rate"] is None else f"{s['mean_pass_rate']:.2f}"
            print(f"{name:<22}{s['chains']:>7}{s['accepted']:>9}{s['rejected']:>9}{s['skipped_as_done']:>8}"
                  f"{s['discarded_chains']:>10}{s.get('selector_dropped', 0):>12}{s.get('selector_redrawn', 0):>8}"
                  f"{s.get('undetermined', 0):>13}  {rate:>9}  {s['rejected_by_reason'] or '-'}")
        counts = summary["records"]
        total = {k: sum(s.get(k, 0) for s in per_env.values()) for k in ("selector_dropped", "selector_redrawn", "undetermined")}
        print(f"\nselectors: {total['selector_redrawn']} chains redrawn and {total['selector_dropped']} dropped because a "
              f"listed element could not be singled out; {total['undetermined']} tasks rejected as undetermined")
        print(f"\n{len(made)}/{len(synthesized)} corpus services synthesized into verified environments; "
              f"{len(good) - len(made)}/{len(validation)} bundled environments verified; store {summary['store']} holds "
              f"{counts.get('accepted', 0)} accepted and {counts.get('rejected', 0)} rejected trajectories "
              f"({summary['tier']}); exported to {ws.exports_dir}: "
              + ", ".join(f"{n} {fmt}" for fmt, n in summary["exports"].items()) + f" rows; {summary['seconds']} s.")
    if not_done:
        print(f"envfactory: {not_done} tasks not done (the model endpoint kept failing); run the same command again "
              "to retry them", file=sys.stderr)
    return 0 if len(good) - len(made) == len(validation) and len(made) == len(synthesized) else 1


def register(sub) -> None:
    p = sub.add_parser("run", help="the main job: validate the catalog, sample, generate and verify trajectories")
    p.add_argument("envs", nargs="*", help="environments (default: the whole bundled catalog)")
    p.add_argument("--n", type=positive_int, default=8, help="chains per environment")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=["single", "conv"], default="single")
    p.add_argument("--rollouts", type=positive_int, default=2, help="rollouts per task (pass@k)")
    p.add_argument("--concurrency", type=positive_int, default=8, help="chains processed at once")
    p.add_argument("--out", dest="workspace", metavar="DIR", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # the 0.1 name of --workspace
    p.add_argument("--skip-synth", action="store_true", help="do not synthesize the corpus services (EnvGen)")
    p.add_argument("--synth-concurrency", type=positive_int, default=2, help="environments synthesized at once")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_run)
