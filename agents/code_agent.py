"""The Code agent: writes an environment package (env.json, schema.sql, seed.json, tools.py).

Skeleton first: a deterministic generator (``envfactory.envs.skeleton.package``) turns the brief's spec
into a complete package that already validates. That is the offline tier. With a model, the agent
then rewrites whole files to add business rules, realistic seed data and richer errors
(prompt ``code_agent/implement``), and repairs a failing package from the Test agent's report
(prompt ``code_agent/repair``). Model output is checked before anything is written: only package
files, Python that compiles, JSON that parses, a manifest that validates; anything else is sent
back to the model with the problem (bounded retries), then the attempt fails with the reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from envfactory.agents.models import model_name
from envfactory.envs.runtime.manifest import Manifest
from envfactory.envs.runtime.pyparse import parse_python
from envfactory.envs.skeleton.spec import ResearchBrief

OFFLINE_TIER = "offline-skeleton"
ROLE = "code"
# What the Code agent owns; tests.json belongs to the Test agent.
CODE_FILES = ("env.json", "schema.sql", "seed.json", "tools.py")
EXAMPLE_ENV = "library"
_SEED_PREVIEW = 4000  # characters of the example's seed data shown to the model


class PackageFiles(BaseModel):
    """Whole files the model wrote (only the ones it changed), checked before they are used."""

    files: dict[str, str] = Field(description="file name -> complete new content; one of env.json, schema.sql, seed.json, tools.py")
    notes: str = Field("", description="what changed and why, in a sentence or two")
    disputed_tests: list[str] = Field(default_factory=list,
                                      description="names of test cases that expect something the brief does not support")

    @field_validator("files")
    @classmethod
    def _well_formed(cls, files: dict[str, str]) -> dict[str, str]:
        if not files:
            raise ValueError("no files: return at least one whole file")
        problems = []
        for name, text in files.items():
            if name not in CODE_FILES:
                problems.append(f"{name!r} is not a package file you may write (allowed: {', '.join(CODE_FILES)})")
            elif not text.strip():
                problems.append(f"{name} is empty")
            elif name == "tools.py":
                try:
                    parse_python(text)
                except SyntaxError as exc:
                    problems.append(f"tools.py is not valid Python: line {exc.lineno}: {exc.msg}")
            elif name.endswith(".json"):
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    problems.append(f"{name} is not valid JSON: line {exc.lineno}: {exc.msg}")
                    continue
                if name == "env.json":
                    try:
                        Manifest.model_validate(data)
                    except ValidationError as exc:
                        first = exc.errors()[0]
                        problems.append(f"env.json is not a valid manifest: {'.'.join(map(str, first['loc']))}: {first['msg']}")
        if problems:
            raise ValueError("; ".join(problems))
        return files


@dataclass
class CodeResult:
    files: dict[str, str]                 # the whole package after this step (tests.json excluded)
    tier: str
    model: str | None = None
    prompt: dict[str, Any] | None = None  # PromptRef of the template used
    tokens: int = 0
    notes: str = ""
    disputed_tests: list[str] = field(default_factory=list)


def skeleton_files(brief: ResearchBrief, seed: int = 0) -> dict[str, str]:
    """The deterministic package for the brief's spec, without its tests (the Test agent writes those)."""
    from envfactory.envs.skeleton.package import generate_package
    files = generate_package(brief.spec, seed=seed)
    return {name: text for name, text in files.items() if name in CODE_FILES}


def example_package() -> dict[str, str]:
    """A bundled package for the model to imitate (its seed data shortened)."""
    from envfactory.envs.runtime.packages import CATALOG_DIR
    root = Path(CATALOG_DIR) / EXAMPLE_ENV
    out = {name: (root / name).read_text(encoding="utf-8") for name in CODE_FILES}
    if len(out["seed.json"]) > _SEED_PREVIEW:
        out["seed.json"] = out["seed.json"][:_SEED_PREVIEW] + "\n... (shortened)"
    return out


def implement(brief: ResearchBrief, model=None, *, files: dict[str, str] | None = None, seed: int = 0,
              prompt_version: str = "latest", max_retries: int = 2, retry=None) -> CodeResult:
    """The skeleton (offline tier), or the model's rewrite of it; ``files`` is the skeleton if already built.
    ``retry``: the role's RetryPolicy for failed model calls (agents/transient.py)."""
    files = files or skeleton_files(brief, seed)
    if model is None:
        return CodeResult(files=files, tier=OFFLINE_TIER)
    from envfactory.prompts.registry import default_registry
    rendered = default_registry().render("code_agent/implement", prompt_version, brief=_brief_text(brief),
                                         files=files, example=example_package())
    return _ask(model, rendered, files, max_retries, retry)


def repair(report: str, files: dict[str, str], model, *, prompt_version: str = "latest",
           max_retries: int = 2, retry=None) -> CodeResult:
    from envfactory.prompts.registry import default_registry
    rendered = default_registry().render("code_agent/repair", prompt_version, report=report, files=files)
    return _ask(model, rendered, files, max_retries, retry)


def _ask(model, rendered, files: dict[str, str], max_retries: int, retry=None) -> CodeResult:
    from envfactory.agents.structured import invoke_structured
    out = invoke_structured(model, rendered.messages(), PackageFiles, max_retries=max_retries, retry=retry)
    usage = out.usage
    return CodeResult(files={**files, **out.value.files}, tier="model", model=model_name(model),
                      prompt=rendered.ref.model_dump(), tokens=usage["input_tokens"] + usage["output_tokens"],
                      notes=out.value.notes, disputed_tests=out.value.disputed_tests)


def _brief_text(brief: ResearchBrief) -> str:
    facts = "\n".join(f"- [{f.kind}] {f.text} (source: {f.source_url})" for f in brief.facts)
    return (f"Service: {brief.service}\n{brief.summary}\n\nFacts:\n{facts}\n\n"
            f"Structured spec:\n{brief.spec.model_dump_json(indent=1, exclude_defaults=True)}")

