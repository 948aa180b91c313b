"""What the report shows, read from a workspace: environments (bundled and synthesized), the records
in the store, and EnvGen's synthesis runs. Nothing here replays a trajectory: records carry their
own state diffs and reward components.

A workspace is the folder ``envfactory run`` / ``synth`` / ``generate`` write to: ``catalog/``
(synthesized packages), ``records.sqlite`` (the record store), ``envgen/`` (synthesis attempts).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from envfactory.data.records import TrajectoryRecord
from envfactory.data.store import RecordStore


@dataclass
class WorkspacePaths:
    root: Path
    catalog_dir: Path
    store_path: Path
    envgen_dir: Path

    @classmethod
    def at(cls, root: str | Path) -> "WorkspacePaths":
        from envfactory.envs.runtime.workspace import Workspace
        ws = Workspace.at(root)
        return cls(root=Path(root), catalog_dir=ws.catalog_dir, store_path=ws.store_path, envgen_dir=ws.envgen_dir)


@dataclass
class EnvInfo:
    name: str
    origin: str                       # "bundled" or "workspace"
    path: str
    domain: str = ""
    version: str = ""
    description: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    trusted: bool = False
    trust_note: str = ""
    validation: dict[str, Any] | None = None
    graph_svg: str | None = None
    graph_summary: dict[str, Any] | None = None
    graph_note: str = ""
    synthesis: dict[str, Any] | None = None
    problem: str = ""                 # why the package could not be read


def environments(ws: WorkspacePaths, run_tests: bool = True) -> list[EnvInfo]:
    """Every bundled environment and every package in the workspace's catalog."""
    from envfactory.envs.runtime.packages import CATALOG_DIR, catalog_names
    found = [(CATALOG_DIR / n, "bundled") for n in catalog_names()]
    if ws.catalog_dir.is_dir():
        found += [(p, "workspace") for p in sorted(ws.catalog_dir.iterdir()) if (p / "env.json").is_file()]
    return [_environment(path, origin, run_tests) for path, origin in found]


def _environment(path: Path, origin: str, run_tests: bool) -> EnvInfo:
    from envfactory.envs.runtime.errors import EnvironmentPackageError
    from envfactory.envs.runtime.manifest import load_manifest
    from envfactory.envs.runtime.trust import is_trusted, untrusted_reason
    from envfactory.envs.runtime.cache import load_env
    info = EnvInfo(name=path.name, origin=origin, path=str(path))
    info.trusted = is_trusted(path)
    try:  # a trusted package is loaded once here and reused by the graph and the tests
        manifest = load_env(path).manifest if info.trusted else load_manifest(path)
    except EnvironmentPackageError as exc:
        info.problem = exc.problem
        return info
    info.name, info.domain, info.version = manifest.name, manifest.domain, manifest.version
    info.description = manifest.description
    info.tools = [{"name": t.name, "description": t.description, "read_only": t.read_only,
                   "input_schema": t.input_schema, "output_schema": t.output_schema,
                   "maskable_arguments": list(t.maskable_arguments)} for t in manifest.tools]
    info.sources = [s.model_dump() for s in manifest.provenance]
    info.trust_note = ("bundled: our own code" if origin == "bundled" else
                       "trusted by you: loads in-process" if info.trusted else untrusted_reason(path))
    info.synthesis = _read_json(path / "synthesis" / "synthesis.json")
    info.validation = _stored_validation(path)
    if info.trusted:  # only code this process may run: graphs are built by executing chains
        info.graph_svg, info.graph_summary, info.graph_note = _graph(path)
        if info.validation is None and run_tests:
            info.validation = _run_tests_here(path)
    else:
        info.graph_note = "not drawn: the package is not trusted to run in this process"
    return info


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stored_validation(path: Path) -> dict[str, Any] | None:
    """The sandboxed validation recorded with the package (``verified.json``), if any."""
    record = _read_json(path / "verified.json")
    if not record or not isinstance(record.get("report"), dict):
        return None
    report = dict(record["report"])
    report["source"] = f"sandboxed validation, {record.get('validated_at', 'date unknown')}"
    return report


def _run_tests_here(path: Path) -> dict[str, Any]:
    """The package's own tests, run in this process (only for code trusted to run here)."""
    from envfactory.envs.runtime.cache import load_env
    from envfactory.envs.validation.testcases import run_suite
    try:
        env = load_env(path)
        suite = run_suite(env)
    except Exception as exc:  # a report never fails on one environment: it says why
        return {"verdict": "FAIL", "verdict_line": f"tests could not run: {type(exc).__name__}: {exc}", "cases": [],
                "source": "run by the report"}
    cov = suite.coverage
    return {"verdict": "PASS" if suite.passed == len(suite.cases) else "FAIL",
            "tests_passed": suite.passed, "tests_total": len(suite.cases),
            "paths_covered": sum(v for paths in cov.values() for v in paths.values()), "paths_total": 2 * len(cov),
            "coverage": cov, "cases": [{"name": c.name, "passed": c.passed, "failures": c.failures} for c in suite.cases],
            "source": "the package's tests, run by the report in this process (trusted code)"}


def _graph(path: Path) -> tuple[str | None, dict[str, Any] | None, str]:
    from envfactory.envs.chains.confirm import build_tool_graph
    from envfactory.envs.chains.drawing import tool_graph_svg
    from envfactory.envs.runtime.cache import load_env
    try:
        tg = build_tool_graph([load_env(path)])
    except Exception as exc:
        return None, None, f"not drawn: {type(exc).__name__}: {exc}"
    return tool_graph_svg(tg.graph, path.name), tg.summary(), ""


def records(ws: WorkspacePaths) -> Iterator[TrajectoryRecord]:
    if not ws.store_path.is_file():
        return iter(())
    return RecordStore(ws.store_path, create=False).query()


def synthesis_runs(ws: WorkspacePaths) -> list[dict[str, Any]]:
    """EnvGen's runs: each attempt with its validation report and the repair brief that followed it."""
    runs = []
    if not ws.envgen_dir.is_dir():
        return runs
    for folder in sorted(p for p in ws.envgen_dir.iterdir() if p.is_dir()):
        result = _read_json(folder / "synthesis.json")
        if result is None:
            runs.append({"run_id": folder.name, "status": "unfinished", "attempts": [], "reason": "no synthesis.json yet"})
            continue
        attempts = []
        for a in result.get("attempts", []):
            report = _read_json(folder / f"attempt-{a.get('n')}.report.json") or {}
            attempts.append({**a, "stages": report.get("stages", []), "failures": report.get("failures", []),
                             "warnings": report.get("warnings", [])})
        runs.append({**result, "run_id": result.get("run_id", folder.name), "attempts": attempts})
    return runs
