"""The Test agent: writes an environment's tests from the brief and the tool schemas (never from the
Code agent's reasoning or code), and turns a validation report into a concise repair brief.

Offline tier: tests generated from the spec by ``envfactory.envs.skeleton.package.generate_tests``. Model
tier: prompt ``test_agent/write_tests`` with the brief, the tool schemas, the table layout and a
few seed rows (data, not code); the suite must parse as ``tests.json`` and call only declared tools,
or it goes back to the model with the problem (bounded retries).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError, create_model, field_validator

from envfactory.agents.models import model_name
from envfactory.envs.skeleton.spec import ResearchBrief
from envfactory.envs.validation.testcases import Case, TestSuite

OFFLINE_TIER = "offline-spec-tests"
ROLE = "test"
_SEED_ROWS_SHOWN = 3
_MESSAGES_PER_STAGE = 8


@dataclass
class TestsResult:
    suite: dict[str, Any]                 # tests.json content
    tier: str
    model: str | None = None
    prompt: dict[str, Any] | None = None
    tokens: int = 0


def _suite_schema(tool_names: set[str], allow_empty: bool = False) -> type[TestSuite]:
    """TestSuite that also refuses calls of tools the package does not declare."""

    def known_tools(cls, cases):
        unknown = sorted({s.call for c in cases for s in c.steps} - tool_names)
        if unknown:
            raise ValueError(f"steps call unknown tools {unknown}; the tools are {', '.join(sorted(tool_names))}")
        return cases

    fields = {"cases": (list[Case], Field(default_factory=list))} if allow_empty else {}
    return create_model("TestSuite", __base__=TestSuite, **fields,
                        __validators__={"known_tools": field_validator("cases")(known_tools)})


def write_tests(brief: ResearchBrief, files: dict[str, str], model=None, *,
                prompt_version: str = "latest", max_retries: int = 2, retry=None) -> TestsResult:
    manifest = json.loads(files["env.json"])
    tools = manifest["tools"]
    seed_rows = json.loads(files["seed.json"])
    if model is None:
        from envfactory.envs.skeleton.package import generate_tests
        return TestsResult(suite=generate_tests(brief.spec, manifest, seed_rows), tier=OFFLINE_TIER)
    from envfactory.agents.structured import invoke_structured
    from envfactory.prompts.registry import default_registry
    sample = {table: rows[:_SEED_ROWS_SHOWN] for table, rows in seed_rows.items()}
    rendered = default_registry().render("test_agent/write_tests", prompt_version, brief=_brief_text(brief),
                                         tools=tools, schema=files["schema.sql"], seed_sample=sample)
    schema = _suite_schema({t["name"] for t in tools})
    out = invoke_structured(model, rendered.messages(), schema, max_retries=max_retries, retry=retry)
    usage = out.usage
    return TestsResult(suite=json.loads(out.value.model_dump_json(exclude_defaults=True)), tier="model",
                       model=model_name(model), prompt=rendered.ref.model_dump(),
                       tokens=usage["input_tokens"] + usage["output_tokens"])


def revise_tests(brief: ResearchBrief, files: dict[str, str], suite: dict[str, Any], disputed: list[str],
                 objection: str, model, *, prompt_version: str = "latest", max_retries: int = 2,
                 retry=None) -> TestsResult:
    """Let the model re-judge the cases the Code agent disputed; the others stay as they are."""
    from envfactory.agents.structured import invoke_structured
    from envfactory.prompts.registry import default_registry
    tools = json.loads(files["env.json"])["tools"]
    cases = [c for c in suite["cases"] if c["name"] in disputed]
    rendered = default_registry().render("test_agent/revise_tests", prompt_version, brief=_brief_text(brief),
                                         tools=tools, cases=cases, objection=objection or "(no reason given)")
    schema = _suite_schema({t["name"] for t in tools}, allow_empty=True)  # every disputed case may go
    out = invoke_structured(model, rendered.messages(), schema, max_retries=max_retries, retry=retry)
    revised = [c.model_dump(mode="json", exclude_defaults=True) for c in out.value.cases]
    kept = [c for c in suite["cases"] if c["name"] not in disputed]
    usage = out.usage
    return TestsResult(suite={"cases": kept + revised}, tier="model", model=model_name(model),
                       prompt=rendered.ref.model_dump(), tokens=usage["input_tokens"] + usage["output_tokens"])


def check_suite(suite: dict[str, Any], tool_names: set[str]) -> list[str]:
    """Problems with a tests.json document (empty when it is usable)."""
    try:
        _suite_schema(tool_names).model_validate(suite)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc'])) or 'tests'}: {e['msg']}" for e in exc.errors()]
    return []


def repair_brief(report) -> str:
    """A short account of what failed, for the Code agent: failing stages, first failures, uncovered paths."""
    lines = [report.verdict_line]
    if report.sandbox is not None and report.sandbox.status != "ok":
        lines.append(f"The sandbox stopped the package: {report.sandbox.status} ({report.sandbox.detail}).")
    for stage in report.stages:
        if stage.status == "fail":
            lines.append(f"Stage '{stage.name}' failed:")
            lines += [f"  - {m}" for m in stage.messages[:_MESSAGES_PER_STAGE]]
            if len(stage.messages) > _MESSAGES_PER_STAGE:
                lines.append(f"  - ... and {len(stage.messages) - _MESSAGES_PER_STAGE} more")
    if report.tests_total:
        lines.append(f"Tests passed: {report.tests_passed}/{report.tests_total}; "
                     f"tool paths covered: {report.paths_covered}/{report.paths_total}.")
    for w in report.warnings[:_MESSAGES_PER_STAGE]:
        lines.append(f"Warning: {w}")
    return "\n".join(lines)


def _brief_text(brief: ResearchBrief) -> str:
    facts = "\n".join(f"- [{f.kind}] {f.text}" for f in brief.facts if f.kind in ("operation", "constraint", "error"))
    return f"Service: {brief.service}\n{brief.summary}\n\nRules and errors:\n{facts}"
