"""EnvGen's steps: research, design, code, write tests, test, repair, revise tests, accept, reject,
and the routing between them."""
from __future__ import annotations


import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from envfactory.agents import code_agent, test_agent
from envfactory.agents.models import model_name
from envfactory.envs.validation.contamination import benchmark_overlap, describe_overlap
from envfactory.envs.runtime.trust import VERIFIED_FILE
from envfactory.envs.skeleton.spec import ResearchBrief, slug


from envfactory.graphs.envgen.context import EnvGenContext, SETTINGS_KEY, _ctx, _model, _retry, _version
from envfactory.graphs.envgen.state import EnvGenState

RESULT_FILE = "synthesis.json"

def _spent(exc: Exception) -> int:
    """Tokens a failed model step used (unusable replies count against the budget too)."""
    return int(getattr(exc, "tokens", 0) or 0)

def _not_a_verdict(step: str, exc: Exception) -> None:
    """Raise when ``exc`` says nothing about the target: a model endpoint that kept failing
    (``ModelUnavailableError``, after its retries). The thread then stops at this step with every
    finished step checkpointed, and a rerun continues it, instead of recording a rejection."""
    from envfactory.agents.transient import ModelUnavailableError, is_transient
    if getattr(exc, "transient", False) or is_transient(exc):
        raise ModelUnavailableError(f"{step}: {exc}", getattr(exc, "attempts", 0) or 0) from exc

def _over_budget(state: EnvGenState, ctx: EnvGenContext) -> bool:
    return state.get("tokens", 0) >= ctx.max_tokens

def research(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> dict[str, Any]:
    from envfactory.agents import search_agent
    from envfactory.agents.search_backends import make_backend
    ctx = _ctx(runtime)
    target = (state.get("target") or "").strip()
    if not target:
        return {"failure": "research: the input needs a 'target' (e.g. 'a library lending API')"}
    model = _model(ctx, "search")
    if model is None:  # offline research reads the bundled corpus; the web backend's options do not apply
        backend_name, options = "corpus", {}
    else:
        backend_name, options = ctx.search_backend, dict(ctx.search_options)
        if backend_name.startswith("cached:"):  # replayable across runs, not only within one call
            options.setdefault("cache_path", str(Path(ctx.workspace_dir) / "search_cache.sqlite"))
            Path(ctx.workspace_dir).mkdir(parents=True, exist_ok=True)
    try:
        backend = make_backend(backend_name, **options)
        result = search_agent.research(target, backend=backend, model=model,
                                       prompt_version=_version(ctx, "search_agent/brief"), retry=_retry(ctx, "search"))
    except Exception as exc:  # no matching service, a failed endpoint, output that never parsed
        _not_a_verdict("research", exc)
        return {"failure": f"research: {type(exc).__name__}: {exc}", "tiers": {"search": "model" if model else "offline"},
                "tokens": state.get("tokens", 0) + _spent(exc)}
    brief = result.brief
    tokens = sum(result.usage.get(k, 0) for k in ("input_tokens", "output_tokens"))
    update: dict[str, Any] = {"brief": brief.model_dump(), "tiers": {"search": brief.tier},
                              "tokens": state.get("tokens", 0) + tokens}
    if result.prompt_ref is not None:
        update["prompts"] = [{"step": "research", **result.prompt_ref.model_dump()}]
        update["models"] = {"search": result.model}
    return update

def _benchmark_clash(names, ctx: EnvGenContext) -> str | None:
    """Which public benchmarks ``names`` mirror (described), unless the run allows that overlap."""
    overlap = benchmark_overlap(names)
    return describe_overlap(overlap) if overlap and not ctx.allow_benchmark_overlap else None

def design(state: EnvGenState, runtime: Runtime[EnvGenContext], config: RunnableConfig) -> dict[str, Any]:
    """Name the package, re-check the spec (a brief may have been edited in Studio) and build the
    deterministic skeleton, which proves the spec can be generated at all."""
    try:
        brief = ResearchBrief.model_validate(state["brief"])
    except Exception as exc:
        return {"failure": f"design: the brief's spec is not usable: {exc}"}
    name = slug(state.get("name") or brief.spec.name)
    brief = brief.model_copy(update={"spec": brief.spec.model_copy(update={"name": name})})
    clash = _benchmark_clash((o.name for o in brief.spec.operations), _ctx(runtime))
    if clash:
        return {"failure": f"design: the spec mirrors public evaluation benchmarks ({clash}); "
                           f"training on it would contaminate their scores: rename the operations or model another service"}
    try:
        skeleton = code_agent.skeleton_files(brief, _ctx(runtime).seed)
    except (ValueError, KeyError) as exc:  # e.g. a model-written spec the generator cannot build
        # (anything else is a fault of ours, not a verdict on the target: it stops the thread, resumable)
        return {"failure": f"design: the spec cannot be turned into a package: {exc}"}
    fingerprint = (config.get("configurable") or {}).get(SETTINGS_KEY)  # the CLI's, computed once per target
    if fingerprint is None:
        fingerprint = settings_fingerprint(_ctx(runtime))
    settings = json.dumps(fingerprint, sort_keys=True, default=str)
    return {"brief": brief.model_dump(), "files": skeleton, "attempt": 0,
            "run_id": f"{name}-{_digest(state.get('target', ''), name, settings)}"}

def settings_fingerprint(ctx: EnvGenContext) -> dict[str, Any]:
    """What decides a synthesis' outcome besides its target: the same target under other models, search
    backend or budget is another synthesis (its own thread and attempt folders)."""
    from envfactory.agents.models import ModelSettings
    settings = ModelSettings.load(overrides=ctx.models)
    models = {role: (None if ctx.offline else model_name(ctx.chat_models[role]) if ctx.chat_models.get(role) is not None
                     else settings.roles[role].model) for role in ("search", "code", "test")}
    return {"models": models, "search": ctx.search_backend, "rounds": ctx.max_rounds, "tokens": ctx.max_tokens,
            "seed": ctx.seed, "prompts": ctx.prompt_versions, "catalog": ctx.catalog_dir}

def code(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> dict[str, Any]:
    ctx = _ctx(runtime)
    model = _model(ctx, "code")
    if model is None:
        return {"tiers": {**state.get("tiers", {}), "code": code_agent.OFFLINE_TIER}}  # the skeleton from design
    brief = ResearchBrief.model_validate(state["brief"])
    try:
        result = code_agent.implement(brief, model, files=state["files"],
                                      prompt_version=_version(ctx, "code_agent/implement"), retry=_retry(ctx, "code"))
    except Exception as exc:  # unusable after retries: this attempt fails, the repair loop goes on
        _not_a_verdict("code", exc)
        return {"repair_brief": f"Your previous reply was unusable: {exc}", "attempt_error": str(exc),
                "tiers": {**state.get("tiers", {}), "code": "model"}, "tokens": state.get("tokens", 0) + _spent(exc),
                **_attempt_failed(state, f"code agent: {exc}", code_model=model_name(model))}
    return _code_update(state, result)

def _code_update(state: EnvGenState, result: code_agent.CodeResult) -> dict[str, Any]:
    update: dict[str, Any] = {"files": result.files, "tiers": {**state.get("tiers", {}), "code": result.tier},
                              "tokens": state.get("tokens", 0) + result.tokens, "disputed_tests": result.disputed_tests,
                              "code_notes": result.notes}
    if result.prompt:
        update["prompts"] = [{"step": f"code#{state.get('attempt', 0) + 1}", **result.prompt}]
        update["models"] = {**state.get("models", {}), "code": result.model}
    return update

def _attempt_failed(state: EnvGenState, reason: str, **fields: Any) -> dict[str, Any]:
    """An attempt whose code never reached the sandbox (unusable model output, benchmark-named tools)."""
    n = state.get("attempt", 0) + 1
    return {"attempt": n, "attempts": [{"n": n, "verdict": "FAIL", "reason": reason, "tests_passed": 0, "tests_total": 0,
                                        "paths_covered": 0, "paths_total": 0, **fields}]}

def write_tests(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> dict[str, Any]:
    ctx = _ctx(runtime)
    if state.get("tests"):
        return {}  # written once, from the brief; repairs change the code, not the tests
    brief = ResearchBrief.model_validate(state["brief"])
    model = _model(ctx, "test")
    try:
        result = test_agent.write_tests(brief, state["files"], model,
                                        prompt_version=_version(ctx, "test_agent/write_tests"), retry=_retry(ctx, "test"))
    except Exception as exc:
        _not_a_verdict("tests", exc)
        return {"failure": f"tests: the test agent failed: {type(exc).__name__}: {exc}",
                "tokens": state.get("tokens", 0) + _spent(exc),
                "tiers": {**state.get("tiers", {}), "test": "model" if model else test_agent.OFFLINE_TIER}}
    update: dict[str, Any] = {"tests": result.suite, "tiers": {**state.get("tiers", {}), "test": result.tier},
                              "tokens": state.get("tokens", 0) + result.tokens}
    if result.prompt:
        update["prompts"] = [{"step": "write_tests", **result.prompt}]
        update["models"] = {**state.get("models", {}), "test": result.model}
    return update

def test(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> dict[str, Any]:
    """Write the attempt to disk and validate it in a fresh sandbox."""
    from envfactory.envs.sandbox.runner import SandboxLimits
    from envfactory.envs.skeleton.package import write_package
    from envfactory.envs.validation.validate import validate_package
    ctx = _ctx(runtime)
    if state.get("attempt_error"):  # the code step already recorded this attempt as failed
        return {"attempt_error": ""}
    n = state.get("attempt", 0) + 1
    tools = [t.get("name", "") for t in json.loads(state["files"]["env.json"]).get("tools", [])]
    clash = _benchmark_clash(tools, ctx)
    if clash:  # a model may rename tools after design checked the spec
        why = f"tools are named like public evaluation benchmarks' ({clash}): rename them"
        failed = _attempt_failed(state, why, sandbox=None, code_tier=state.get("tiers", {}).get("code"))
        return {**failed, "best": state.get("best") or failed["attempts"][0], "repair_brief": why}
    folder = Path(ctx.workspace_dir) / state["run_id"] / f"attempt-{n}"
    if folder.exists():
        shutil.rmtree(folder)  # a resumed run rewrites the attempt it was killed in
    write_package({**state["files"], "tests.json": json.dumps(state["tests"], indent=1)}, folder)
    report = validate_package(folder, limits=SandboxLimits(wall_seconds=ctx.sandbox_seconds), write_record=False)
    _report_path(folder).write_text(report.model_dump_json(indent=1), encoding="utf-8")
    summary = {"n": n, "path": str(folder), "verdict": report.verdict, "reason": report.verdict_line,
               "tests_passed": report.tests_passed, "tests_total": report.tests_total,
               "paths_covered": report.paths_covered, "paths_total": report.paths_total,
               "sandbox": report.sandbox.status if report.sandbox else None, "duration_s": report.duration_s,
               "code_tier": state.get("tiers", {}).get("code")}
    brief = "" if report.verdict == "PASS" else test_agent.repair_brief(report)
    summary["repair_brief"] = brief  # what the Code agent is told next (kept for the report)
    best = state.get("best")
    if best is None or _rank(summary) > _rank(best):
        best = summary
    return {"attempt": n, "attempts": [summary], "best": best, "repair_brief": brief}

def _rank(summary: dict[str, Any]) -> tuple:
    return (summary["verdict"] == "PASS", summary["tests_passed"], summary["paths_covered"], -summary["n"])

def route(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> Literal["accept", "review", "repair", "reject"]:
    ctx = _ctx(runtime)
    if state.get("failure"):
        return "reject"
    last = state["attempts"][-1] if state.get("attempts") else None
    if last and last["verdict"] == "PASS":
        return "review" if ctx.review else "accept"
    if _model(ctx, "code") is None:
        return "reject"  # the offline tier is deterministic: repeating it cannot change the outcome
    if state.get("attempt", 0) > ctx.max_rounds or _over_budget(state, ctx):
        return "reject"
    return "repair"

def repair(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> dict[str, Any]:
    ctx = _ctx(runtime)
    model = _model(ctx, "code")
    try:
        result = code_agent.repair(state.get("repair_brief", ""), state["files"], model,
                                   prompt_version=_version(ctx, "code_agent/repair"), retry=_retry(ctx, "code"))
    except Exception as exc:
        _not_a_verdict("repair", exc)
        return {"attempt_error": str(exc), "tokens": state.get("tokens", 0) + _spent(exc),
                **_attempt_failed(state, f"code agent: {exc}", code_model=model_name(model))}
    return _code_update(state, result)

def after_repair(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> Literal["revise_tests", "test"]:
    """Disputed test cases go back to the Test agent (the reference never repaired its fixtures)."""
    known = {c["name"] for c in state.get("tests", {}).get("cases", [])}
    disputed = [n for n in state.get("disputed_tests") or [] if n in known]
    return "revise_tests" if disputed and _model(_ctx(runtime), "test") is not None else "test"

def revise_tests(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> dict[str, Any]:
    ctx = _ctx(runtime)
    brief = ResearchBrief.model_validate(state["brief"])
    try:
        result = test_agent.revise_tests(brief, state["files"], state["tests"], state["disputed_tests"],
                                         state.get("code_notes", ""), _model(ctx, "test"),
                                         prompt_version=_version(ctx, "test_agent/revise_tests"),
                                         retry=_retry(ctx, "test"))
    except Exception as exc:  # the suite stays as it was; the next validation decides
        _not_a_verdict("revise_tests", exc)
        return {"disputed_tests": [], "code_notes": f"test revision failed: {exc}",
                "tokens": state.get("tokens", 0) + _spent(exc)}
    return {"tests": result.suite, "disputed_tests": [], "tokens": state.get("tokens", 0) + result.tokens,
            "prompts": [{"step": f"revise_tests#{state.get('attempt', 0) + 1}", **result.prompt}]}

def review(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> dict[str, Any]:
    """Human review (``EnvGenContext.review``): the graph pauses here (a LangGraph interrupt) with the
    passing attempt's diff against the skeleton and its test results, and resumes with the answer:
    ``"approve"`` / ``{"approve": true}``, ``"reject"`` / ``{"approve": false}``, or feedback text
    (``{"feedback": "..."}``) that becomes the repair brief of another round."""
    from langgraph.types import interrupt
    ctx = _ctx(runtime)
    last = state["attempts"][-1]
    answer = interrupt({
        "target": state.get("target"), "package": state.get("brief", {}).get("spec", {}).get("name"),
        "attempt": last["n"], "folder": last["path"], "code_tier": last.get("code_tier"),
        "tests": f"{last['tests_passed']}/{last['tests_total']} passed",
        "paths": f"{last['paths_covered']}/{last['paths_total']} tool paths covered",
        "diff": skeleton_diff(state, ctx),
        "answer": "approve, reject, or feedback text for another repair round"})
    verdict, feedback = read_review(answer)
    if verdict == "approve":
        return {"review": "approved"}
    if verdict == "reject":
        return {"review": "rejected", "failure": "rejected by the reviewer" + (f": {feedback}" if feedback else "")}
    if _model(ctx, "code") is None:
        return {"review": "rejected", "failure": f"the reviewer asked for changes ({feedback}), but no code model is "
                                                 "configured to make them (the offline tier is the skeleton)"}
    if state.get("attempt", 0) > ctx.max_rounds or _over_budget(state, ctx):
        return {"review": "rejected", "failure": f"the reviewer asked for changes ({feedback}), but the repair budget "
                                                 f"is spent ({ctx.max_rounds} rounds, {ctx.max_tokens} tokens)"}
    return {"review": "feedback", "repair_brief": "A reviewer read the attempt that passed its tests and asks for "
                                                  f"changes before it is accepted:\n{feedback}"}

def read_review(answer: Any) -> tuple[str, str]:
    """(approve | reject | feedback, the reviewer's words) from what the review was resumed with."""
    if isinstance(answer, bool):
        return ("approve" if answer else "reject"), ""
    if isinstance(answer, dict):
        feedback = str(answer.get("feedback") or "").strip()
        if "approve" in answer:
            return ("approve" if answer["approve"] else "reject"), feedback
        return ("feedback", feedback) if feedback else ("reject", "no answer")
    text = str(answer or "").strip()
    if text.lower() in ("approve", "approved", "yes", "y", "accept"):
        return "approve", ""
    if text.lower() in ("reject", "rejected", "no", "n", ""):
        return "reject", ""
    return "feedback", text

def after_review(state: EnvGenState) -> Literal["accept", "repair", "reject"]:
    return {"approved": "accept", "feedback": "repair"}.get(state.get("review", ""), "reject")

def skeleton_diff(state: EnvGenState, ctx: EnvGenContext, limit: int = 60_000) -> str:
    """What a model changed in the generated skeleton (unified diff, bounded); empty for the skeleton tier."""
    import difflib
    brief = ResearchBrief.model_validate(state["brief"])
    try:
        base = code_agent.skeleton_files(brief, ctx.seed)
    except (ValueError, KeyError):
        base = {}
    chunks = []
    for name in sorted(set(base) | set(state.get("files", {}))):
        before, after = base.get(name, ""), state.get("files", {}).get(name, "")
        if before != after:
            chunks += difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"skeleton/{name}", name)
    text = "".join(chunks)
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)\n"

def accept(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> dict[str, Any]:
    """Copy the passing attempt into the catalog with how it was made, and mark it verified."""
    from envfactory.envs.runtime.trust import grant_trust, package_digest
    from envfactory.envs.validation.validate import ValidationReport, write_verified
    ctx = _ctx(runtime)
    brief = ResearchBrief.model_validate(state["brief"])
    source = Path(state["attempts"][-1]["path"])
    dest = Path(ctx.catalog_dir) / brief.spec.name
    staging = dest.with_name(f"{dest.name}.staging-{state['run_id']}")  # concurrent runs never share one
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    (staging / "synthesis").mkdir()
    (staging / "synthesis" / "brief.json").write_text(brief.model_dump_json(indent=1), encoding="utf-8")
    (staging / "synthesis" / RESULT_FILE).write_text(json.dumps(_result(state, "accepted", None), indent=1), encoding="utf-8")
    # The package files are byte-for-byte the ones the sandbox just passed; the digest now also covers
    # the synthesis record, so editing either afterwards revokes trust.
    report = ValidationReport.model_validate_json(_report_path(source).read_text(encoding="utf-8"))
    if package_digest(source) != report.digest:  # the folder changed after the sandbox judged it
        shutil.rmtree(staging, ignore_errors=True)
        return _reject_update(state, ctx, f"attempt #{state['attempts'][-1]['n']} changed on disk after its validation")
    report = report.model_copy(update={"digest": package_digest(staging), "path": str(dest.resolve())})
    model_written = state.get("tiers", {}).get("code") == "model"
    write_verified(staging, report, model_written=model_written)
    if _is_our_skeleton(staging, brief, ctx.seed):  # our generator's code: trusted like bundled code
        grant_trust(staging, by="envgen: byte-exact skeleton output")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)  # the catalog only ever holds whole packages
    _write_result(ctx, state, "accepted", None, str(dest))
    return {"status": "accepted", "reason": "", "package_path": str(dest)}

def _is_our_skeleton(package: Path, brief: ResearchBrief, seed: int) -> bool:
    """Is every file that runs (tools, schema, manifest, seed) byte for byte what the deterministic
    skeleton generator makes of this spec, with nothing else beside them but tests and the record?"""
    try:
        expected = {n: t.encode("utf-8") for n, t in code_agent.skeleton_files(brief, seed).items()}
    except Exception:
        return False
    present = {p.relative_to(package).as_posix() for p in package.rglob("*") if not p.is_dir()}
    ignored = {VERIFIED_FILE, "tests.json"}
    if {p for p in present if p not in ignored and not p.startswith("synthesis/")} != set(expected):
        return False
    return all((package / n).is_file() and not (package / n).is_symlink() and (package / n).read_bytes() == data
               for n, data in expected.items())

def _report_path(attempt_folder: Path) -> Path:
    """The validation report sits beside the attempt, outside the package."""
    return attempt_folder.with_name(attempt_folder.name + ".report.json")

def reject(state: EnvGenState, runtime: Runtime[EnvGenContext]) -> dict[str, Any]:
    return _reject_update(state, _ctx(runtime), _rejection_reason(state, _ctx(runtime)))

def _rejection_reason(state: EnvGenState, ctx: EnvGenContext) -> str:
    if state.get("failure"):
        return state["failure"]
    best = state.get("best")
    tail = (f"; best attempt #{best['n']}: {best['tests_passed']}/{best['tests_total']} tests, "
            f"{best['paths_covered']}/{best['paths_total']} paths ({best['reason']})") if best else ""
    if _over_budget(state, ctx):
        return f"token budget exhausted ({state.get('tokens', 0)} of {ctx.max_tokens}){tail}"
    if _model(ctx, "code") is None:
        return f"the offline skeleton did not validate{tail}"
    return f"no attempt passed within {ctx.max_rounds} repair round(s){tail}"

def _reject_update(state: EnvGenState, ctx: EnvGenContext, reason: str) -> dict[str, Any]:
    _write_result(ctx, state, "rejected", reason, None)
    return {"status": "rejected", "reason": reason}

def _result(state: EnvGenState, status: str, reason: str | None) -> dict[str, Any]:
    return {"target": state.get("target"), "run_id": state.get("run_id"), "status": status, "reason": reason,
            "tiers": state.get("tiers", {}), "models": state.get("models", {}), "prompts": state.get("prompts", []),
            "tokens": state.get("tokens", 0), "attempts": state.get("attempts", []), "best": state.get("best"),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}

def _write_result(ctx: EnvGenContext, state: EnvGenState, status: str, reason: str | None, path: str | None) -> None:
    run_id = state.get("run_id") or f"unnamed-{_digest(state.get('target', ''))}"
    folder = Path(ctx.workspace_dir) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps({**_result(state, status, reason), "package_path": path}, indent=1), encoding="utf-8")
    tmp.replace(folder / RESULT_FILE)

def clean_partial(values: dict[str, Any], ctx: EnvGenContext) -> list[Path]:
    """Before an unfinished thread continues: remove what a killed run left half-made and the thread's
    checkpoint does not know of (attempt folders past its last checkpointed attempt or without their
    validation report, the catalog staging folder, temporary result files, an ``unnamed-*`` result
    folder of a target that has no verdict). Returns what it removed."""
    removed: list[Path] = []
    workspace, run_id = Path(ctx.workspace_dir), values.get("run_id")
    done = values.get("attempt", 0)

    def drop(path: Path) -> None:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)
        removed.append(path)

    if run_id and (workspace / run_id).is_dir():
        for folder in (workspace / run_id).glob("attempt-*"):
            n = folder.name.split("-", 1)[1].split(".", 1)[0]
            if folder.is_dir() and (not n.isdigit() or int(n) > done or not _report_path(folder).exists()):
                drop(folder)
                _report_path(folder).unlink(missing_ok=True)
        for tmp in (workspace / run_id).glob("*.tmp"):
            drop(tmp)
        for staging in Path(ctx.catalog_dir).glob(f"*.staging-{run_id}"):
            drop(staging)
    if not run_id and not values.get("status"):
        unnamed = workspace / f"unnamed-{_digest(values.get('target', ''))}"
        if unnamed.exists():
            drop(unnamed)
    return removed

def _digest(*parts: str) -> str:
    import hashlib
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]
