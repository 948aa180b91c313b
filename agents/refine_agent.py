"""Refine agent: calibrated refinement of user queries, checked in code.

Role: ``refine``; prompt: ``refine_agent/calibrate``. A model rewrites queries the way people
talk (refer to things instead of quoting ids, drop what can be inferred, compress chained
actions, add plausible ambiguity or constraints). Whatever wrote it, the result must pass the
leakage check here, and the verify step re-solves it against the gold state.
Offline tier: no rewrite (the template queries pass through, labelled as such).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from envfactory.envs.chains.sampling import GoldTrajectory

from envfactory.agents.query_agent import hidden_values, leaked_terms

OFFLINE_TIER = "offline:no-refinement"


class LeakageReport(BaseModel):
    ok: bool
    leaks: list[str] = []


def check_leakage(traj: GoldTrajectory, queries: list[str], turns: list[list[int]],
                  tool_names: list[str], param_names: list[str]) -> LeakageReport:
    leaks: list[str] = []
    for n, (query, indices) in enumerate(zip(queries, turns)):
        for leak in leaked_terms(query, tool_names, param_names, hidden_values(traj, indices)):
            leaks.append(f"turn {n + 1}: {leak}")
    return LeakageReport(ok=not leaks, leaks=leaks)


def tool_and_param_names(tools: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    names = [t["function"]["name"] for t in tools]
    params = sorted({p for t in tools for p in t["function"]["parameters"].get("properties", {})})
    return names, params


class RefinedQueries(BaseModel):
    """What the refine model must return: one rewritten message per input message."""

    queries: list[str]


def calibrate_prompt(traj: GoldTrajectory, queries: list[str], turns: list[list[int]], prompt_version: str = "latest"):
    """The rendered ``refine_agent/calibrate`` prompt (what QueryGen sends)."""
    from envfactory.agents.query_agent import stated_values
    from envfactory.prompts.registry import default_registry
    from envfactory.agents.query_agent import turn_facts
    known = [{k: v for i in idx for k, v in stated_values(traj.calls[i]).items()} for idx in turns]
    extra = {}
    if "facts" in default_registry().get("refine_agent/calibrate", prompt_version).front.variables():
        extra["facts"] = [turn_facts(traj, idx) for idx in turns]  # v2: must survive the rewrite
    return default_registry().render("refine_agent/calibrate", prompt_version, queries=queries, known=known, **extra)


def calibrate(traj: GoldTrajectory, queries: list[str], turns: list[list[int]], model, *,
              prompt_version: str = "latest", retry=None) -> tuple[list[str], LeakageReport]:
    """Rewritten queries from ``model`` (a plain call) and their leakage check, as QueryGen does it."""
    from envfactory.agents.structured import invoke_structured
    from envfactory.envs.runtime.cache import load_env
    rendered = calibrate_prompt(traj, queries, turns, prompt_version)
    refined = invoke_structured(model, rendered.messages(), RefinedQueries, retry=retry).value.queries
    tools = [spec.openai_schema() for n in traj.envs for spec in load_env(n).tool_specs]
    return refined, check_leakage(traj, refined, turns, *tool_and_param_names(tools))
