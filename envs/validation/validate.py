"""Verified means executed: validate a package whose code runs in a contained child process.

The child only executes calls; the tests, their comparisons, the state hashes and the verdict are
computed here from the outputs and state bytes it sends (a child that forges a result line or
patches the test runner changes nothing). Stages: import (manifest, schema, seed, tool module), tool listing and
schema checks, the environment's own tests, a determinism check (the same calls twice give the
same state hashes and outputs), coverage (every tool on a success and an error path), and the
catalog quality bar (warnings, or failures with ``strict``).
"""
from __future__ import annotations

import inspect
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from envfactory.envs.runtime.errors import EnvironmentPackageError
from envfactory.envs.runtime.manifest import load_manifest
from envfactory.envs.runtime.packages import CATALOG_DIR, resolve_package
from envfactory.envs.runtime.trust import VERIFIED_FILE, package_digest
from envfactory.envs.sandbox.remote import copy_package
from envfactory.envs.sandbox.runner import SandboxLimits, SandboxResult, new_workspace, run_sandboxed


class Stage(BaseModel):
    name: str
    status: Literal["ok", "fail", "skip"]
    messages: list[str] = []


class ValidationReport(BaseModel):
    env: str
    version: str = ""
    domain: str = ""
    path: str
    digest: str = ""
    verdict: Literal["PASS", "FAIL"]
    verdict_line: str
    stages: list[Stage] = []
    tools: int = 0
    tests_total: int = 0
    tests_passed: int = 0
    failures: list[str] = []
    coverage: dict[str, dict[str, bool]] = {}
    paths_total: int = 0
    paths_covered: int = 0
    deterministic: bool | None = None
    warnings: list[str] = []
    sandbox: SandboxResult | None = None
    duration_s: float = 0.0


# ---------------------------------------------------------------- inside the sandbox

def undeclared_tools(env) -> tuple[str, list[str]]:
    """Public functions of a package's tools module (or public methods of an imported class) that
    env.json does not declare: likely tools someone forgot to list."""
    declared = set(env.tools)
    cls = getattr(env, "cls", None)
    if getattr(env, "instance_global", None):  # an MCP server file: its tools are the @mcp.tool() functions
        from envfactory.envs.imports.source import mcp_tool_names
        return "@mcp.tool() functions", sorted(n for n in mcp_tool_names(env.module) if n not in declared)
    if cls is not None:  # pyclass backend: the tools are methods, their fn is None
        from envfactory.envs.imports.importer import SKIP_METHODS, _is_tool_method
        names = [n for n in dir(cls) if not n.startswith("_") and n not in SKIP_METHODS and _is_tool_method(cls, n)]
        return f"methods of {cls.__name__}", sorted(n for n in names if n not in declared)
    module = getattr(next(iter(env.tools.values())).fn, "__module__", None) if env.tools else None
    if not module or module not in sys.modules:
        return "functions", []
    return "functions", sorted(n for n, f in vars(sys.modules[module]).items()
                               if inspect.isfunction(f) and f.__module__ == module and not n.startswith("_") and n not in declared)


def child_validate(package: Path, strict: bool = False) -> dict[str, Any]:
    """Validation inside a one-shot sandbox child (packages the sandbox server does not serve: pyclass)."""
    from envfactory.envs.runtime.environment import Environment
    from envfactory.envs.runtime.errors import EnvironmentPackageError
    try:
        env = Environment.load(package, trust=True)
    except EnvironmentPackageError as exc:
        return {"stages": [{"name": "import", "status": "fail", "messages": [exc.problem]}], "warnings": []}
    except MemoryError:
        raise
    except Exception as exc:
        return {"stages": [{"name": "import", "status": "fail", "messages": [f"{type(exc).__name__}: {exc}"]}],
                "warnings": []}
    return validate_env(env, strict, undeclared_tools(env))


def validate_env(env, strict: bool, undeclared: tuple[str, list[str]]) -> dict[str, Any]:
    """Every stage after the import, on a loaded environment: the tests (twice, for determinism), the
    coverage and the quality bar. For sandboxed environments this runs here, in the parent: the child
    only executes the calls."""
    from envfactory.envs.validation.quality import quality_problems
    from envfactory.envs.validation.testcases import load_suite, run_suite

    stages: list[dict] = []
    out: dict[str, Any] = {"stages": stages, "warnings": [], "env": env.name, "version": env.manifest.version,
                           "domain": env.manifest.domain, "tools": len(env.tools)}
    stages.append({"name": "import", "status": "ok", "messages": [f"{len(env.tools)} tools, {len(env.tables)} tables"]})
    kind, extra = undeclared
    if extra:
        out["warnings"].append(f"public {kind} not declared as tools: {', '.join(extra)}")
    stages.append({"name": "tools", "status": "ok", "messages": ["every declared tool is implemented"]})

    if not env.manifest.tests:
        stages.append({"name": "tests", "status": "fail", "messages": ["the manifest declares no tests file"]})
        return out
    try:
        suite = load_suite(env.package_dir / env.manifest.tests)
    except Exception as exc:
        stages.append({"name": "tests", "status": "fail", "messages": [f"{env.manifest.tests} is invalid: {exc}"]})
        return out
    first = run_suite(env, suite)
    failures = [f"{c.name}: {f}" for c in first.cases for f in c.failures]
    out.update(tests_total=len(first.cases), tests_passed=first.passed, failures=failures,
               coverage=first.coverage)
    stages.append({"name": "tests", "status": "ok" if not failures else "fail", "messages": failures[:20]})

    second = run_suite(env, suite)
    same = ([c.step_hashes for c in first.cases] == [c.step_hashes for c in second.cases]
            and [c.outputs for c in first.cases] == [c.outputs for c in second.cases])
    out["deterministic"] = same
    stages.append({"name": "determinism", "status": "ok" if same else "fail",
                   "messages": [] if same else ["running the same calls twice gave different states or outputs "
                                                "(time, randomness or hidden state in the tool code?)"]})

    uncovered = first.uncovered()
    declared = [u for u in uncovered if u in suite.uncovered and env.manifest.backend == "pyclass"]
    if declared:  # an import's exploration found no call reaching these: listed, not failed
        out["warnings"].append(f"not exercised, as tests.json declares: {', '.join(declared)}")
        out["declared_uncovered"] = declared
    uncovered = [u for u in uncovered if u not in declared]
    stages.append({"name": "coverage", "status": "ok" if not uncovered else "fail",
                   "messages": [f"not exercised: {', '.join(uncovered)}"] if uncovered else []})
    problems = quality_problems(env) if env.manifest.backend == "sqlite" else []
    if problems:
        if strict:
            stages.append({"name": "quality", "status": "fail", "messages": problems})
        else:
            out["warnings"] += problems
    return out


def _validate_served(package_dir: Path, limits: SandboxLimits, strict: bool) -> tuple[dict[str, Any], SandboxResult]:
    """A SQLite package: a contained child server executes the calls, this process runs the tests
    and decides. Any stop of the child (time, CPU, memory, crash, an unasked message) fails."""
    from envfactory.envs.runtime.errors import EnvironmentPackageError
    from envfactory.envs.sandbox.remote import SandboxError, SandboxedEnvironment
    started = time.perf_counter()
    env = None
    try:
        env = SandboxedEnvironment(package_dir, limits=limits, restart=False)
        payload = validate_env(env, strict, (env.undeclared.get("kind", "functions"), env.undeclared.get("names", [])))
        process = env.process
    except SandboxError as exc:
        return {}, SandboxResult(status=exc.status, detail=str(exc), duration_s=round(time.perf_counter() - started, 3),
                                 isolation=exc.layers, stderr_tail=exc.stderr_tail)
    except EnvironmentPackageError as exc:
        return ({"stages": [{"name": "import", "status": "fail", "messages": [exc.problem]}], "warnings": []},
                SandboxResult(status="ok", duration_s=round(time.perf_counter() - started, 3)))
    finally:
        if env is not None:
            env.close()
    status = process.status if process.status not in ("ok", "stopped") else "ok"
    result = SandboxResult(status=status, detail=process.detail if status != "ok" else "",
                           duration_s=round(time.perf_counter() - started, 3), isolation=process.layers,
                           stderr_tail=process.stderr_tail, exit_code=process.proc.returncode)
    return payload, result


# ---------------------------------------------------------------- in the caller

def validate_package(ref: str | Path, *, limits: SandboxLimits | None = None, strict: bool = False,
                     write_record: bool = True) -> ValidationReport:
    """Validate a bundled name or a package folder in a fresh sandbox; never hangs, never raises
    for a broken or hostile package (the report says what happened)."""
    started = time.perf_counter()
    try:
        package_dir = resolve_package(ref)
    except Exception as exc:
        return _report_failure(str(ref), str(ref), f"cannot find the package: {exc}", started)
    digest = package_digest(package_dir)
    limits = limits or SandboxLimits()
    try:
        backend = load_manifest(package_dir).backend
    except EnvironmentPackageError as exc:
        rep = _report_failure(package_dir.name, str(package_dir), exc.problem, started)
        rep.digest = digest
        return rep
    if backend == "sqlite":
        payload, result = _validate_served(package_dir, limits, strict)
    else:
        workspace = new_workspace()
        try:
            target = workspace / "package"
            copy_package(package_dir, target)
            from envfactory.envs.imports.importer import http_clients
            preimport = http_clients(sorted(target.rglob("*.py")))  # imported before the containment
            result = run_sandboxed({"task": "validate", "package": str(target), "strict": strict, "preimport": preimport},
                                   workspace, limits)
        except EnvironmentPackageError as exc:
            result = SandboxResult(status="ok", payload={"stages": [{"name": "import", "status": "fail",
                                                                      "messages": [exc.problem]}]})
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
        payload = result.payload or {}
    name = payload.get("env") or package_dir.name
    if result.status != "ok" or "stages" not in payload:
        reason = {"timeout": "stopped: it ran past the wall-clock limit",
                  "cpu_limit": "stopped: it used more CPU time than allowed",
                  "memory_limit": "stopped: it used more memory than allowed",
                  "blocked": f"stopped: the sandbox refused {result.detail}",
                  "killed_by_signal": f"crashed: {result.detail}",
                  "crashed": f"crashed: {result.detail}",
                  "bad_result": f"stopped: {result.detail}",
                  "refused": f"not run: {result.detail}"}.get(result.status, result.detail or payload.get("error", "no result"))
        if result.status == "ok":
            reason = f"validation itself failed: {payload.get('error', 'no result')}"
        rep = _report_failure(name, str(package_dir), reason, started, result)
        rep.digest = digest
        return rep
    stages = [Stage(**s) for s in payload["stages"]]
    failed = [s for s in stages if s.status == "fail"]
    cov = payload.get("coverage", {})
    total_paths = 2 * len(cov)
    covered = sum(v for paths in cov.values() for v in paths.values())
    verdict = "FAIL" if failed else "PASS"
    duration = time.perf_counter() - started
    if failed:
        line = f"FAIL {name}: {failed[0].name}: {'; '.join(failed[0].messages[:2]) or 'failed'}"
    else:
        declared = len(payload.get("declared_uncovered", []))
        line = (f"PASS {name} {payload.get('version', '')}: {payload.get('tests_passed')}/{payload.get('tests_total')} tests, "
                f"{covered}/{total_paths} tool paths covered" + (f" ({declared} declared unreachable)" if declared else "")
                + f", deterministic ({duration:.1f} s)")
    report = ValidationReport(env=name, version=payload.get("version", ""), domain=payload.get("domain", ""),
                              path=str(package_dir), digest=digest, verdict=verdict, verdict_line=line, stages=stages,
                              tools=payload.get("tools", 0), tests_total=payload.get("tests_total", 0),
                              tests_passed=payload.get("tests_passed", 0), failures=payload.get("failures", []),
                              coverage=cov, paths_total=total_paths, paths_covered=covered,
                              deterministic=payload.get("deterministic"), warnings=payload.get("warnings", []),
                              sandbox=result, duration_s=round(duration, 2))
    if verdict == "PASS" and write_record and CATALOG_DIR not in package_dir.parents:
        write_verified(package_dir, report, model_written=_model_written(package_dir))
    return report


def _model_written(package_dir: Path) -> bool:
    """Did EnvGen's Code agent run on a model for this package? (re-validating keeps the opt-in rule)"""
    try:
        record = json.loads((package_dir / "synthesis" / "synthesis.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return (record.get("tiers") or {}).get("code") == "model"


def write_verified(package_dir: Path, report: ValidationReport, model_written: bool = False) -> Path:
    """The verification record; ``model_written`` packages load in-process only on the user's opt-in."""
    path = package_dir / VERIFIED_FILE
    path.write_text(json.dumps({"digest": report.digest, "model_written": model_written,
                                "validated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                "report": json.loads(report.model_dump_json(exclude={"sandbox": {"stderr_tail"}}))}, indent=1))
    return path


def _report_failure(name: str, path: str, reason: str, started: float, sandbox: SandboxResult | None = None) -> ValidationReport:
    return ValidationReport(env=name, path=path, verdict="FAIL", verdict_line=f"FAIL {name}: {reason}",
                            stages=[Stage(name="sandbox", status="fail", messages=[reason])], sandbox=sandbox,
                            duration_s=round(time.perf_counter() - started, 2))


def run_validate_command(args) -> int:
    from tqdm import tqdm

    from envfactory.envs.runtime.packages import catalog_names
    if args.all:
        targets = catalog_names()
    elif args.target:
        resolve_package(args.target)  # an unknown name or a folder that is no package: exit 2, like every command
        targets = [args.target]
    else:
        print("envfactory: name a package or pass --all", file=sys.stderr)
        return 2
    limits = SandboxLimits(wall_seconds=args.timeout)
    reports = [validate_package(t, limits=limits) for t in tqdm(targets, desc="validating", file=sys.stderr,
                                                                 disable=args.json or len(targets) == 1)]
    if args.json:
        print(json.dumps([json.loads(r.model_dump_json()) for r in reports], indent=2))
    elif len(reports) == 1:
        r = reports[0]
        print(r.verdict_line)
        for s in r.stages:
            if s.status == "fail":
                for m in s.messages[:10]:
                    print(f"  {s.name}: {m}")
        for w in r.warnings:
            print(f"  warning: {w}")
    else:
        print(f"{'env':<16}{'domain':<20}{'tools':>6}{'tests':>9}{'coverage':>10}  verdict")
        for r in reports:
            print(f"{r.env:<16}{r.domain:<20}{r.tools:>6}{str(r.tests_passed) + '/' + str(r.tests_total):>9}"
                  f"{str(r.paths_covered) + '/' + str(r.paths_total):>10}  {r.verdict}")
        for r in reports:
            if r.verdict == "FAIL":
                print(r.verdict_line)
    return 0 if all(r.verdict == "PASS" for r in reports) else 1
