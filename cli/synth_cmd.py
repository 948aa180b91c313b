"""``envfactory synth``: the EnvGen graph for one target or a batch, resumable.

Every target is one LangGraph thread in a SQLite checkpointer (``<out>/checkpoints.sqlite``): a
finished thread is reported, not redone; a thread killed mid-way resumes from its last completed
step; a new one starts fresh. Targets run concurrently up to ``--concurrency``.
"""
from __future__ import annotations

import hashlib
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from envfactory.cli.arguments import existing_file, non_negative_int, output_dir, positive_float, positive_int


def read_batch(path: str) -> list[dict[str, str]]:
    """Targets from a file: one per line, or JSON lines with "target" (and optional "name")."""
    items = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON: {exc.msg}") from None
            if not isinstance(item, dict) or not str(item.get("target", "")).strip():
                raise ValueError(f"{path}:{n}: a JSON line needs a non-empty \"target\"")
            items.append({k: str(v) for k, v in item.items() if k in ("target", "name")})
        else:
            items.append({"target": line})
    if not items:
        raise ValueError(f"{path}: no targets")
    return items


def thread_id(item: dict[str, str], ctx=None, fingerprint: dict[str, Any] | None = None) -> str:
    """One thread per target and the settings that decide its outcome: the same target with another
    model, search backend or budget is a new synthesis, not a finished one. ``fingerprint``: ctx's
    ``settings_fingerprint`` if the caller has it already (it reads the models file)."""
    if fingerprint is None:
        fingerprint = _fingerprint(ctx)
    return "synth-" + hashlib.sha256(json.dumps([item, fingerprint], sort_keys=True).encode()).hexdigest()[:16]


def _fingerprint(ctx) -> dict[str, Any]:
    from envfactory.graphs.envgen.nodes import settings_fingerprint
    return {} if ctx is None else settings_fingerprint(ctx)


def synthesize(graph, item: dict[str, str], ctx, on_step=None, reviewer=None) -> dict[str, Any]:
    """Run (or resume, or just report) one target's thread under these settings. ``reviewer(item,
    question) -> answer`` answers the graph's review interrupts (``EnvGenContext.review``)."""
    from envfactory.graphs.envgen import SETTINGS_KEY
    fingerprint = _fingerprint(ctx)  # once per target: its thread here, its run id in the graph's design step
    configurable = {"thread_id": thread_id(item, ctx, fingerprint)}
    if ctx is not None:  # without one, the graph's design step fingerprints its default context, as before
        configurable[SETTINGS_KEY] = fingerprint
    config = {"configurable": configurable, "recursion_limit": 200}
    snapshot = graph.get_state(config)
    if snapshot.values.get("status") and not snapshot.next:
        return {**_outcome(item, snapshot.values), "resumed": "done before"}
    start = None if snapshot.next else item  # None continues the interrupted thread from its checkpoint
    if start is None and ctx is not None:  # a killed run's half-made folders go before the thread goes on
        from envfactory.graphs.envgen.nodes import clean_partial
        clean_partial(snapshot.values, ctx)
    from langgraph.types import Command
    resumed = start is None
    while True:
        for update in graph.stream(start, config, context=ctx, stream_mode="updates", durability="sync"):
            if on_step:
                on_step(item, next(iter(update)))
        snapshot = graph.get_state(config)
        if not (snapshot.next and snapshot.interrupts) or reviewer is None:
            break
        start = Command(resume=reviewer(item, snapshot.interrupts[0].value))  # a person answered the review
    outcome = _outcome(item, snapshot.values)
    if snapshot.next and snapshot.interrupts:
        outcome.update(status="waiting", reason="waiting for review: rerun with --review to answer")
    return {**outcome, "resumed": "continued" if resumed else ""}


_review_lock = threading.Lock()


def ask_reviewer(item: dict[str, str], question: dict[str, Any]) -> Any:
    """The terminal's answer to a review interrupt (one target at a time)."""
    with _review_lock:
        print(f"\n=== review: {item['target']} (attempt #{question['attempt']}: {question['tests']}, "
              f"{question['paths']}; code: {question['code_tier']})\nfolder: {question['folder']}", file=sys.stderr)
        print(question["diff"] or "(no changes to the generated skeleton)", file=sys.stderr)
        print("approve [a], reject [r], or type feedback for another repair round:", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return {"approve": False, "feedback": "no reviewer answered (end of input)"}
        text = line.strip()
        return {"a": "approve", "r": "reject"}.get(text.lower(), text)


def _outcome(item: dict[str, str], values: dict[str, Any]) -> dict[str, Any]:
    best = values.get("best") or {}
    return {"target": item["target"], "status": values.get("status"), "reason": values.get("reason"),
            "package": values.get("package_path"), "attempts": len(values.get("attempts", [])),
            "tests": f"{best.get('tests_passed', 0)}/{best.get('tests_total', 0)}", "tokens": values.get("tokens", 0),
            "tiers": values.get("tiers", {})}


def synthesize_batch(items: list[dict[str, str]], ctx, checkpoints: Path, concurrency: int = 2,
                     show: bool = True, executor: str = "threads", ray_address: str | None = None,
                     reviewer=None) -> list[dict[str, Any]]:
    """Synthesize every item (resuming threads found in ``checkpoints``), with a progress bar; with
    ``executor="ray"`` each target is a Ray task (``_synthesize_on_ray``). ``reviewer`` answers review
    interrupts (threads only)."""
    from langgraph.checkpoint.sqlite import SqliteSaver
    from tqdm import tqdm

    from envfactory.graphs.envgen import make_graph
    checkpoints.parent.mkdir(parents=True, exist_ok=True)
    # a repeated line is one synthesis (one ctx for all: equal items are equal threads)
    items = list({json.dumps(item, sort_keys=True): item for item in items}.values())
    results = []
    bar = tqdm(total=len(items), desc="synthesizing environments" + (" (Ray)" if executor == "ray" else ""),
               unit="env", disable=not show, file=sys.stderr)
    if executor == "ray":
        results = _synthesize_on_ray(items, ctx, checkpoints, concurrency, bar, ray_address)
    else:
        with SqliteSaver.from_conn_string(str(checkpoints)) as saver:
            graph = make_graph().copy(update={"checkpointer": saver})

            def step(item, node):
                bar.set_postfix_str(f"{item.get('name') or item['target'][:30]}: {node}")

            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                review = {"reviewer": reviewer} if reviewer else {}
                futures = {pool.submit(synthesize, graph, item, ctx, step, **review): item for item in items}
                for fut in as_completed(futures):
                    try:
                        results.append(fut.result())
                    except Exception as exc:  # one target's crash must not lose the others
                        results.append(_unfinished(futures[fut], exc))
                    bar.update(1)
    bar.close()
    order = {item["target"]: i for i, item in enumerate(items)}
    return sorted(results, key=lambda r: order.get(r["target"], 0))


def _synthesize_on_ray(items, ctx, checkpoints: Path, concurrency: int, bar, address: str | None) -> list[dict[str, Any]]:
    """One Ray task per target (one CPU each, ``concurrency`` in flight), each in its own worker
    process with its own sandboxes, checkpointed in the run's checkpoint database as in threads
    mode: a task whose worker died is rerun once by Ray and continues from its last step. The
    workspace, catalog and checkpoint paths must be on a filesystem every node sees (one machine,
    or a shared mount)."""
    import os

    from envfactory.graphs.querygen.ray_executor import connect, forwarded_settings, ray_module
    ray = ray_module()
    connect(address)
    task = ray.remote(num_cpus=1, max_retries=1)(_synthesize_task)
    settings = forwarded_settings(getattr(ctx, "models", {}))
    queue, pending, results = list(items), {}, []
    while queue or pending:
        while queue and len(pending) < max(1, concurrency):
            item = queue.pop(0)
            pending[task.remote(item, ctx, str(checkpoints.resolve()), settings, os.getcwd())] = item
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            item = pending.pop(ref)
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayTaskError as exc:  # the target's own failure, raised in the task
                results.append(_unfinished(item, exc.cause if isinstance(exc.cause, Exception) else exc))
            except ray.exceptions.RayError as exc:  # its worker died twice, or the cluster lost it
                results.append(_unfinished(item, exc))
            bar.update(1)
    return results


def _synthesize_task(item: dict[str, str], ctx, checkpoints: str, settings: dict[str, str], cwd: str) -> dict[str, Any]:
    """A target in a Ray worker (one task at a time per worker process), with its own connection to
    the run's checkpoints, in the caller's working directory: relative paths mean what they meant
    there, and the context (so the thread's id) is the one threads mode would use."""
    import os

    from langgraph.checkpoint.sqlite import SqliteSaver

    from envfactory.graphs.envgen import make_graph
    os.environ.update(settings)
    os.chdir(cwd)
    with SqliteSaver.from_conn_string(checkpoints) as saver:
        return synthesize(make_graph().copy(update={"checkpointer": saver}), item, ctx)


def _unfinished(item: dict[str, str], exc: Exception) -> dict[str, Any]:
    """A target whose thread stopped without a verdict: its finished steps are checkpointed and a
    rerun continues it. "not done" when the model endpoint kept failing, "error" for a fault of ours."""
    from envfactory.agents.transient import is_transient
    if is_transient(exc):
        return {"target": item["target"], "status": "not done", "reason": f"{exc} (rerun to continue)"}
    return {"target": item["target"], "status": "error", "reason": f"{type(exc).__name__}: {exc} (rerun to continue)"}


def cmd_synth(args) -> int:
    from envfactory.graphs.envgen import EnvGenContext
    if bool(args.target) == bool(args.batch):
        print("envfactory: synth: give a TARGET or --batch FILE (not both)", file=sys.stderr)
        return 2
    try:
        items = read_batch(args.batch) if args.batch else [{"target": args.target, **({"name": args.name} if args.name else {})}]
    except (OSError, ValueError) as exc:
        print(f"envfactory: synth: {exc}", file=sys.stderr)
        return 2
    from envfactory.envs.runtime.workspace import current_workspace
    ws = current_workspace()
    if not (args.out and args.catalog):
        ws.ensure()
    out = Path(args.out or ws.envgen_dir)
    args.catalog = args.catalog or str(ws.catalog_dir)
    ctx = EnvGenContext(max_rounds=args.max_rounds, max_tokens=args.max_tokens, search_backend=args.search_backend,
                        catalog_dir=args.catalog, workspace_dir=str(out), offline=args.offline,
                        sandbox_seconds=args.timeout, review=args.review)
    if args.ray_address and args.executor != "ray":
        print("envfactory: synth: --ray-address needs --executor ray", file=sys.stderr)
        return 2
    if args.review and args.executor == "ray":
        print("envfactory: synth: --review asks at this terminal; it needs --executor threads", file=sys.stderr)
        return 2
    if args.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            print("envfactory: synth: --executor ray needs Ray: pip install 'envfactory[ray]'", file=sys.stderr)
            return 2
    results = synthesize_batch(items, ctx, out / "checkpoints.sqlite", args.concurrency, show=not args.json,
                               executor=args.executor, ray_address=args.ray_address,
                               reviewer=ask_reviewer if args.review else None)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            where = r.get("package") or r.get("reason")
            print(f"{r['status'] or '?':<9} {r['target'][:40]:<40} attempts {r.get('attempts', 0)}  tests {r.get('tests', '-'):<7} "
                  f"{'(' + r['resumed'] + ') ' if r.get('resumed') else ''}{where}")
        accepted = sum(r["status"] == "accepted" for r in results)
        unfinished = sum(r["status"] in ("not done", "error") for r in results)
        print(f"\n{accepted}/{len(results)} environments accepted into {args.catalog}; attempts and reasons in {out}/"
              + (f"\n{unfinished} not finished: rerun the same command to continue them" if unfinished else ""))
    return 0 if all(r["status"] == "accepted" for r in results) else 1


def register(sub) -> None:
    p = sub.add_parser("synth", help="synthesize verified environments from API documentation (EnvGen graph)")
    p.add_argument("target", nargs="?", help='what to model, e.g. "a library lending API"')
    p.add_argument("--name", help="package name (default: from the research brief)")
    p.add_argument("--batch", type=existing_file, help="file of targets: one per line, or JSON lines with target and name")
    p.add_argument("--concurrency", type=positive_int, default=2, help="targets synthesized at once")
    p.add_argument("--executor", choices=["threads", "ray"], default="threads",
                   help="ray: one Ray task per target (the out and catalog folders must be on a filesystem every "
                        "node sees); needs the ray extra")
    p.add_argument("--ray-address", default=None,
                   help="with --executor ray: the cluster to join ('auto', ray://HOST:10001); default: a local "
                        "Ray instance on loopback")
    p.add_argument("--out", type=output_dir, default=None, help="attempts, results and the checkpoint database (default: the workspace's envgen/)")
    p.add_argument("--catalog", type=output_dir, default=None, help="where accepted environments land (default: the workspace's catalog/, "
                                                   "where every command finds them by name)")
    p.add_argument("--max-rounds", type=non_negative_int, default=3, help="repair rounds after the first attempt")
    p.add_argument("--max-tokens", type=positive_int, default=400_000, help="model token budget per target")
    p.add_argument("--search-backend", default="corpus", help="ddgs | corpus | fixture | cached:ddgs (with a search model)")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="wall-clock seconds of one sandboxed validation")
    p.add_argument("--offline", action="store_true", help="use the offline tier even if models are configured")
    p.add_argument("--review", action="store_true",
                   help="before accepting, show the code's diff against the skeleton and the test results and ask: "
                        "approve, reject, or feedback for another repair round")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_synth)
