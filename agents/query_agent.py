"""Query agent: turns a gold chain into what a real user would say, one message per user turn.

Role: ``query``; prompt: ``query_agent/generate``. Offline tier: a template verbalizer, labelled
as such, that states only what the user knows (values grounded in data) and never the ids that
come from earlier tool outputs.
"""
from __future__ import annotations

import random
import re
from typing import Any, Callable

from pydantic import BaseModel

from envfactory.agents.phrasing import param_phrase, reference_clause, selector_noun, tool_phrase, words
from envfactory.envs.chains.sampling import GoldCall, GoldTrajectory

OFFLINE_TIER = "offline:template-verbalizer"


class TurnPlan(BaseModel):
    """A slice of the chain that one user message asks for."""

    calls: list[int]                   # indices into the trajectory's calls
    stated: dict[str, Any] = {}        # what the user says: "param (tool)" -> value


def split_turns(traj: GoldTrajectory, seed: int, max_calls_per_turn: int = 4) -> list[list[int]]:
    """Group calls into user turns: a turn ends after a write (the user sees the result before
    asking the next thing) or after ``max_calls_per_turn`` calls; deterministic for a seed."""
    rng = random.Random(f"turns:{seed}")
    turns, current = [], []
    for i, call in enumerate(traj.calls):
        current.append(i)
        last = i == len(traj.calls) - 1
        if last or len(current) >= max_calls_per_turn or (not call.read_only and rng.random() < 0.7):
            turns.append(current)
            current = []
    return turns


def stated_values(call: GoldCall) -> dict[str, Any]:
    """Arguments the user must state: grounded user values and ids the user knows (order numbers)."""
    return {p: call.arguments[p] for p, b in call.bindings.items()
            if b.source in ("user", "user_id") and p in call.arguments and p not in call.masked_arguments}


def selector_clauses(call: GoldCall) -> list[str]:
    """How the user singles out each listed element the call takes a value from ("for the lot whose
    lot number is "FLU-2"", "with other as the note with the latest created at"). The only element of
    a list needs no words."""
    out = []
    for param, sel in call.selectors.items():
        if sel.kind == "only" or param in call.masked_arguments:
            continue
        noun = selector_noun(param)
        out.append(f"for {sel.text}" if noun == sel.entity else f"with {noun} as {sel.text}")
    return out


def reference_clauses(traj: GoldTrajectory, i: int, schema_of: Callable[[str, str], dict[str, Any]]) -> list[str]:
    """For each value taken from an earlier result that the latest result having such a field would
    not give (a member found by email, then a hold of another member cancelled), which result it is."""
    from envfactory.agents.determinacy import aliases, derive
    call = traj.calls[i]
    props = schema_of(call.env, call.tool).get("properties", {})
    out = []
    for param, b in call.bindings.items():
        if b.source != "call" or param not in call.arguments or param in call.masked_arguments:
            continue
        sel = call.selectors.get(param)
        if sel is not None and sel.kind != "only":
            continue
        names = aliases(param, props.get(param, {}))
        if derive(names, [c.output for c in traj.calls[:i]])[0] != call.arguments[param]:
            out.append(reference_clause(param, traj.calls[b.call].tool))
    return out


def turn_facts(traj: GoldTrajectory, indices: list[int],
               schema_of: Callable[[str, str], dict[str, Any]] | None = None) -> dict[str, list[str]]:
    """What a turn's message must convey besides its values, in plain words: how the user singles out
    each listed item ("refund order: the order whose product name is "Green Peas"") and which earlier
    result a value comes from (the reference sentences). Given to the model tier's prompts as facts."""
    schema_of = schema_of or _package_schema
    selectors, references = [], []
    for i in indices:
        call = traj.calls[i]
        selectors += [f"{tool_phrase(call.tool)}: {sel.text}" for p, sel in call.selectors.items()
                      if sel.kind != "only" and p not in call.masked_arguments]
        references += reference_clauses(traj, i, schema_of)
    return {"selectors": selectors, "references": references}


def _package_schema(env: str, tool: str) -> dict[str, Any]:
    from envfactory.envs.runtime.cache import load_env
    return load_env(env).manifest.tool(tool).input_schema


def _phrase(traj: GoldTrajectory, i: int, schema_of: Callable[[str, str], dict[str, Any]]) -> str:
    call = traj.calls[i]
    phrase = tool_phrase(call.tool)
    values = stated_values(call)
    if values:
        details = ", ".join(f"{param_phrase(k)} {_say(v)}" for k, v in values.items())
        phrase += f" ({details})"
    clauses = selector_clauses(call) + reference_clauses(traj, i, schema_of)
    if clauses:
        phrase += " " + ", ".join(clauses)
    return phrase


def _say(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return ", ".join(_say(v) for v in value)
    return str(value)


def template_queries(traj: GoldTrajectory, turns: list[list[int]], descriptions: dict[str, str] | None = None,
                     schema_of: Callable[[str, str], dict[str, Any]] | None = None) -> list[str]:
    """The offline verbalizer: plain, explicit requests (no model wrote these). ``schema_of(env, tool)``
    gives a tool's input schema (default: from the environment package)."""
    schema_of = schema_of or _package_schema
    out = []
    for n, indices in enumerate(turns):
        phrases = [_phrase(traj, i, schema_of) for i in indices]
        lead = "Hi, could you" if n == 0 else "Thanks. Next, could you"
        body = phrases[0] if len(phrases) == 1 else ", then ".join(phrases[:-1]) + ", and then " + phrases[-1]
        out.append(f"{lead} {body}?")
    return out


# Numbers this small are everyday words too (days of a month, hours, counts): a hidden id this
# small counts as leaked only where the query uses it as an id, after an id marker or an entity noun.
SMALL_ID_LIMIT = 31
_ID_MARKERS = ("id", "ids", "no", "nr", "num", "number", "numbers", "ref", "reference")


def _standalone(text: str) -> str:
    # the 11 inside a date like 2026-05-11, a version 1.11 or a path a/11 is not an id; the one
    # ending a sentence ("cancel order 57.") is
    return rf"(?<![\w.\-/:]){re.escape(text)}(?![\w\-/:]|\.\w)"


def _id_nouns(param_names: list[str]) -> set[str]:
    """Entity nouns a query would put before an id: ``task`` from task_id, ``depends on`` from depends_on_id."""
    nouns = {"id"}
    for name in param_names:
        stem = re.sub(r"_ids?$", "", name) if re.search(r"_ids?$", name) else None
        if stem:
            nouns.add(stem.replace("_", " "))
            nouns.add(stem.rsplit("_", 1)[-1])  # assignee from task_assignee_id
    return nouns


def _in_id_context(query: str, text: str, nouns: set[str]) -> bool:
    """``text`` used as an id: after a marker (#5, no. 5, number 5, ID is 5) or an entity noun
    (task 5), also inside a list (tasks 3, 4 and 5)."""
    marker = rf"\b(?:{'|'.join(_ID_MARKERS)})\b\.?(?:\s+(?:is|was))?"
    noun = rf"\b(?:{'|'.join(re.escape(n) for n in sorted(nouns, key=len, reverse=True))})(?:e?s)?\b"
    prefix = rf"(?:(?:{marker})\s*:?\s*)?(?:#\s*)?"
    listed = rf"(?:{prefix}[\w-]*\d[\w-]*\s*(?:,|and|or|&)\s*)*"
    pattern = rf"(?:{noun}|{marker}|#)\s*:?\s*{listed}{prefix}{_standalone(text)}"
    return re.search(pattern, query, re.IGNORECASE) is not None


def leaked_terms(query: str, tool_names: list[str], param_names: list[str], hidden_values: list[Any]) -> list[str]:
    """What a query reveals that a user could not know: tool names, parameter keys written as
    identifiers, and ids that only tool outputs carry (small ids only where used as ids)."""
    found = []
    lowered = query.lower()
    for name in tool_names:
        # a one-word tool name ("unsubscribe") is plain English; identifiers like cancel_order are not
        if "_" in name and re.search(rf"\b{re.escape(name.lower())}\b", lowered):
            found.append(f"tool name {name}")
    for name in param_names:
        if "_" in name and re.search(rf"\b{re.escape(name.lower())}\b", lowered):
            found.append(f"parameter key {name}")
    nouns = _id_nouns(param_names)
    for value in hidden_values:
        text = str(value)
        if isinstance(value, bool) or len(text) == 0:
            continue
        if isinstance(value, (int, float)) or re.fullmatch(r"[A-Za-z]*[-_]?\d+[\w-]*", text):
            if not re.search(_standalone(text), query):
                continue
            small = text.isdigit() and int(text) <= SMALL_ID_LIMIT
            if not small or _in_id_context(query, text, nouns):
                found.append(f"id {text} that comes from a tool output")
    return found


def hidden_values(traj: GoldTrajectory, indices: list[int] | None = None) -> list[Any]:
    """Values bound from earlier outputs, minus any the user states anyway (as a value or as what
    singles out a listed element: "the note whose title is ...")."""
    calls = [traj.calls[i] for i in (indices if indices is not None else range(len(traj.calls)))]
    stated = {repr(v) for c in traj.calls for v in stated_values(c).values()}
    stated |= {repr(v) for c in traj.calls for sel in c.selectors.values() for v in sel.values}
    return [c.arguments[p] for c in calls for p, b in c.bindings.items()
            if b.source == "call" and p in c.arguments and repr(c.arguments[p]) not in stated]


class GeneratedQueries(BaseModel):
    """What the query model must return: one user message per turn."""

    queries: list[str]


DEFAULT_PERSONA = "a regular customer of the service, polite and brief"


def generate_prompt(traj: GoldTrajectory, turns: list[list[int]], descriptions: dict[str, str],
                    persona: str = DEFAULT_PERSONA, prompt_version: str = "latest"):
    """The rendered ``query_agent/generate`` prompt for a chain cut into turns (what QueryGen sends)."""
    from envfactory.prompts.registry import default_registry
    plans = [{"actions": "; ".join(descriptions.get(traj.calls[i].tool, traj.calls[i].tool) for i in idx),
              "known": {k: v for i in idx for k, v in stated_values(traj.calls[i]).items()},
              **turn_facts(traj, idx)}  # selectors and references (read by v2 and later)
             for idx in turns]
    return default_registry().render("query_agent/generate", prompt_version, persona=persona, turns=plans)


def generate(traj: GoldTrajectory, turns: list[list[int]], model, *, persona: str = DEFAULT_PERSONA,
             prompt_version: str = "latest", retry=None) -> list[str]:
    """One user message per turn, written by ``model`` (a plain call, e.g. from a notebook); the
    QueryGen graph makes the same call and then checks the messages for leaks."""
    from envfactory.agents.structured import invoke_structured
    from envfactory.envs.runtime.cache import load_env
    descriptions = {t.name: t.description for n in traj.envs for t in load_env(n).tool_specs}
    rendered = generate_prompt(traj, turns, descriptions, persona, prompt_version)
    return invoke_structured(model, rendered.messages(), GeneratedQueries, retry=retry).value.queries
