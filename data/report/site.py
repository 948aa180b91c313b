"""Writes the report: a static site (open ``index.html``; no server, nothing fetched at view time).

Pages: ``index.html`` (overview), ``envs/<name>.html`` (an environment), ``trajectories.html`` (every
record, filtered and searched in the page over ``data/index.js``), ``t/<key>.html`` (one trajectory),
``envgen.html`` (synthesis attempts). The index is a script file, not JSON fetched at view time,
because browsers refuse ``fetch`` on ``file://`` pages.
"""
from __future__ import annotations

import collections
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment as Jinja, PackageLoader, StrictUndefined, select_autoescape

from envfactory.data.report import collect, plots, views

STATIC = Path(__file__).resolve().parent / "static"
SAMPLE_CHAINS = 6  # accepted trajectories shown on an environment page


def _jinja() -> Jinja:
    jinja = Jinja(loader=PackageLoader("envfactory.data.report", "templates"), autoescape=select_autoescape(["j2", "html"]),
                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    jinja.filters["pretty"] = views.pretty
    jinja.filters["num"] = lambda v, digits=2: "–" if v is None else f"{v:.{digits}f}"
    jinja.filters["args"] = lambda a: ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (a or {}).items())
    jinja.filters["change_summary"] = views.change_summary
    return jinja


def build_report(workspace: str | Path, out: str | Path, *, limit: int | None = None, progress: bool = True,
                 run_tests: bool = True) -> dict[str, Any]:
    """Render the report of ``workspace`` into ``out``; returns counts and timings."""
    started = time.perf_counter()
    ws = collect.WorkspacePaths.at(workspace)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the report")
    (out / "t").mkdir(parents=True, exist_ok=True)
    (out / "envs").mkdir(exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    shutil.copytree(STATIC, out / "static", dirs_exist_ok=True)
    jinja = _jinja()

    envs = collect.environments(ws, run_tests=run_tests)
    env_names = {e.name for e in envs}
    rows, per_env = [], collections.defaultdict(lambda: collections.Counter())
    samples: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    reasons, tiers, models = collections.Counter(), collections.Counter(), collections.Counter()
    pass_rates, scores, tokens, accepted = [], [], 0, 0
    t_pages = time.perf_counter()
    page = jinja.get_template("trajectory.html.j2")
    common = {"generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    records = collect.records(ws)
    from tqdm import tqdm
    bar = tqdm(desc="report: trajectory pages", unit="page", disable=not progress, file=sys.stderr)
    for i, record in enumerate(records):
        if limit is not None and i >= limit:
            break
        row = views.index_row(record)
        rows.append(row)
        for name in row["envs"]:
            per_env[name][record.status] += 1
        if record.verification.accepted:
            accepted += 1
            for name in row["envs"]:
                if len(samples[name]) < SAMPLE_CHAINS:
                    samples[name].append({"key": record.key, "calls": [c.name for c in record.gold_calls()],
                                          "query": row["query"]})
        else:
            reasons[row["reason"]] += 1
        tiers[row["rollout"] or "unknown"] += 1
        for role, m in record.provenance.models.items():
            models[f"{role}: {m}"] += 1
        pass_rates.append(record.verification.pass_rate)
        scores.append(row["score"])
        tokens += getattr(record.verification, "tokens", None) or 0
        (out / "t" / f"{record.key}.html").write_text(page.render(
            root="../", r=record, row=row, turns=views.turn_views(record), known_envs=env_names, **common), encoding="utf-8")
        bar.update()
    bar.close()
    page_seconds = time.perf_counter() - t_pages
    (out / "data" / "index.js").write_text("window.REPORT_INDEX = " + json.dumps(rows, separators=(",", ":")) + ";\n",
                                           encoding="utf-8")
    runs = collect.synthesis_runs(ws)
    overview = {
        "workspace": str(ws.root.resolve()), "records": len(rows), "accepted": accepted, "rejected": len(rows) - accepted,
        "reasons": dict(reasons), "tiers": dict(tiers), "models": dict(models), "tokens": tokens,
        "tokens_per_accepted": (tokens / accepted) if accepted and tokens else None,
        "outcome_svg": plots.outcome_bars(accepted, dict(reasons)) if rows else None,
        "pass_rate_svg": plots.histogram(pass_rates, "pass rate (share of k rollouts that passed)") if rows else None,
        "score_svg": plots.histogram(scores, "reward of the kept rollout") if rows else None,
        "store_found": ws.store_path.is_file(),
    }
    (out / "index.html").write_text(jinja.get_template("index.html.j2").render(
        root="", o=overview, envs=envs, per_env=per_env, runs=runs, **common), encoding="utf-8")
    env_page = jinja.get_template("env.html.j2")
    for env in envs:
        (out / "envs" / f"{env.name}.html").write_text(env_page.render(
            root="../", e=env, counts=per_env.get(env.name, {}), samples=samples.get(env.name, []), **common), encoding="utf-8")
    (out / "trajectories.html").write_text(jinja.get_template("trajectories.html.j2").render(
        root="", envs=sorted(env_names | {n for r in rows for n in r["envs"]}), **common), encoding="utf-8")
    (out / "envgen.html").write_text(jinja.get_template("envgen.html.j2").render(root="", runs=runs, **common),
                                     encoding="utf-8")
    return {"out": str(out), "index": str(out / "index.html"), "environments": len(envs), "trajectories": len(rows),
            "synthesis_runs": len(runs), "seconds": round(time.perf_counter() - started, 2),
            "trajectory_pages_seconds": round(page_seconds, 2)}
