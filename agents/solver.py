"""The offline tier's agent: a rule-based solver that sees only what any agent sees.

It reads the user's messages, the tool schemas and the tool outputs it gets back, never the gold:
it finds the actions the user asks for (the tool phrases the template verbalizer writes, "look up
order"), the values the user states ("quantity 3", "reason "damaged on arrival""), and what singles
out a listed element ("for the order whose product name is ..."); every other required value it takes
from an earlier output (the latest one that has the field; from a list only through a selector it read,
or when the list has one element). When a value is missing or a list is ambiguous it stops and asks,
as an agent should, and the task then fails verification. Its pass rate is a real re-solvability
measurement of the offline tier's queries. Its closing messages report what the calls returned or
changed. Scripted output: labelled ``offline:rule-solver``, never model output.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from envfactory.agents.determinacy import aliases, arrays, derive, listed, select
from envfactory.agents.phrasing import REFERENCE, param_phrase, selector_noun, tool_phrase, words
from envfactory.agents.rollout_agent import RolloutResult, route_tool, turn_diff
from envfactory.data.records import Message, ToolCallOut
from envfactory.envs.chains.selectors import entity_of, singular
from envfactory.envs.runtime.environment import Environment

SOLVER_TIER = "offline:rule-solver"

_CLAUSE = re.compile(
    r'(?:\bfor|\bwith (?P<noun>[a-z0-9][a-z0-9 ]*?) as) the (?P<entity>[a-z0-9][a-z0-9 ]*?) '
    r'(?:whose (?P<conds>[a-z0-9][a-z0-9 ]*? is (?:"[^"]*"|[^\s,?"]+)'
    r'(?: and [a-z0-9][a-z0-9 ]*? is (?:"[^"]*"|[^\s,?"]+))*)'
    r'|with the (?P<dir>latest|earliest|highest|lowest) (?P<field>[a-z0-9][a-z0-9 ]*?)(?=,|\?|$| for | with ))')
_COND = re.compile(r'(?:^|\s+and\s+)(?P<f>[a-z0-9][a-z0-9 ]*?) is (?P<v>"[^"]*"|[^\s,?"]+)')
_DIRECTION = {"latest": "max", "highest": "max", "earliest": "min", "lowest": "min"}


class Clause(dict):
    """A selector read from the text: entity, noun (the parameter it names, if any), and either
    conditions (field words -> value text) or an order (direction, field words)."""


def solver_rollout(envs: dict[str, Environment], queries: list[str], system_prompt: str = "") -> RolloutResult:
    """Solve the task from the user's messages alone, on fresh episodes."""
    episodes = {n: e.episode() for n, e in envs.items()}
    specs = {s.name: s for e in envs.values() for s in e.tool_specs}
    messages: list[Message] = [Message(role="system", content=system_prompt)] if system_prompt else []
    outputs: list[Any] = []  # every successful output so far, oldest first
    producers: list[str] = []  # the tool that gave each
    counter, notes, diffs = 0, [], []
    for query in queries:
        messages.append(Message(role="user", content=query))
        done: list[tuple[str, Any]] = []
        question = None
        for tool, details, rest in _segments(query, specs):
            spec = specs[tool]
            args = _parse_details(details, spec.input_schema)
            refs = _references(rest, specs, outputs, producers)
            args, question = _fill(tool, spec.input_schema, args, _clauses(rest), outputs, refs)
            if question:
                break
            counter += 1
            call_id = f"call_{counter}"
            messages.append(Message(role="assistant", content="",
                                    tool_calls=[ToolCallOut(id=call_id, name=tool, arguments=args)]))
            res = episodes[route_tool(envs, tool)].call(tool, args)
            messages.append(Message(role="tool", tool_call_id=call_id, name=tool, content=res.text))
            if res.ok:
                outputs.append(res.output)
                producers.append(tool)
            done.append((tool, res))
        if question:
            notes.append(question)
        messages.append(Message(role="assistant", content=_reply(done, specs, question)))
        diffs.append(turn_diff(episodes))
    return RolloutResult(messages=messages, episodes=episodes, steps=counter, tier=SOLVER_TIER,
                         stopped="completed" if not notes else "asked_user", notes=notes, turn_diffs=diffs)


# ------------------------------------------------------------------ reading the request
@lru_cache(maxsize=256)
def _action_pattern(tools: tuple[str, ...]) -> tuple[re.Pattern, dict[str, str]]:
    """One regex for every tool phrase after "you" or "then" (longest first), and phrase -> tool."""
    by_phrase = {tool_phrase(t).lower(): t for t in tools}
    alternatives = "|".join(re.escape(p) for p in sorted(by_phrase, key=len, reverse=True))
    return re.compile(rf"(?:\byou|\bthen)\s+({alternatives})\b", re.IGNORECASE), by_phrase


def _segments(query: str, specs: dict) -> list[tuple[str, str, str]]:
    """(tool, stated details, the rest of its clause) for each action the message asks for, in order."""
    pattern, by_phrase = _action_pattern(tuple(sorted(specs)))
    starts = [(m.start(1), m.end(1), by_phrase[m[1].lower()]) for m in pattern.finditer(query)]
    out = []
    for k, (at, end, tool) in enumerate(starts):
        stop = starts[k + 1][0] if k + 1 < len(starts) else len(query)
        body = query[end:stop]
        details, rest = "", body
        stripped = body.lstrip()
        if stripped.startswith("("):
            close = _closing(stripped)
            details, rest = stripped[1:close], stripped[close + 1:]
        out.append((tool, details, rest))
    return out


def _closing(text: str) -> int:
    """Index of the parenthesis closing ``text[0]`` (quotes respected)."""
    depth, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def _parse_details(details: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``quantity 3, reason "damaged", to store credit yes`` -> typed arguments of the tool."""
    props = schema.get("properties", {})
    phrases = sorted(((param_phrase(p), p) for p in props), key=lambda x: -len(x[0]))
    args: dict[str, Any] = {}
    i = 0
    while i < len(details):
        if details[i] in ", ":
            i += 1
            continue
        hit = next(((ph, p) for ph, p in phrases if details[i:].lower().startswith(ph.lower() + " ")), None)
        if hit is None:  # not a parameter: skip to the next separator outside quotes
            i = _next_separator(details, i)
            continue
        phrase, param = hit
        i += len(phrase) + 1
        texts, i = _read_values(details, i, props[param].get("type") == "array")
        args[param] = _typed(texts, props[param])
    return args


def _next_separator(text: str, i: int) -> int:
    quoted = False
    while i < len(text):
        if text[i] == '"':
            quoted = not quoted
        elif not quoted and text.startswith(", ", i):
            return i + 2
        i += 1
    return i


def _read_values(text: str, i: int, many: bool) -> tuple[list[str], int]:
    values = []
    while i < len(text):
        if text[i] == '"':
            close = text.find('"', i + 1)
            close = len(text) if close < 0 else close
            values.append(text[i:close + 1])
            i = close + 1
        else:
            stop = text.find(", ", i)
            stop = len(text) if stop < 0 else stop
            values.append(text[i:stop].strip())
            i = stop
        if many and text.startswith(', "', i):
            i += 2
            continue
        break
    return values, i


def _typed(texts: list[str], schema: dict[str, Any]) -> Any:
    if schema.get("type") == "array":
        return [_scalar(t, schema.get("items", {})) for t in texts]
    return _scalar(texts[0] if texts else "", schema)


def _scalar(text: str, schema: dict[str, Any]) -> Any:
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return text[1:-1]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), None)
    if typ == "boolean" or text in ("yes", "no"):
        return text == "yes"
    try:
        if typ == "integer" or (typ is None and re.fullmatch(r"-?\d+", text)):
            return int(text)
        if typ == "number":
            return float(text)
    except ValueError:
        pass
    return text


def _clauses(rest: str) -> list[Clause]:
    out = []
    for m in _CLAUSE.finditer(rest):
        clause = Clause(entity=m["entity"].strip(), noun=(m["noun"] or "").strip())
        if m["conds"]:
            clause["conds"] = [(c["f"].strip(), c["v"]) for c in _COND.finditer(m["conds"])]
        else:
            clause["order"], clause["field"] = _DIRECTION[m["dir"]], m["field"].strip()
        out.append(clause)
    return out


# ------------------------------------------------------------------ finding the values
def _references(rest: str, specs: dict, outputs: list[Any], producers: list[str]) -> dict[str, Any]:
    """noun -> the latest output of the step the user names ("using the member from the find member step")."""
    by_phrase = {tool_phrase(t): t for t in specs}
    out = {}
    for m in REFERENCE.finditer(rest.lower()):
        tool = by_phrase.get(m["phrase"])
        runs = [k for k, t in enumerate(producers) if t == tool]
        if runs:
            out[m["noun"]] = outputs[runs[-1]]
    return out


def _fill(tool: str, schema: dict[str, Any], args: dict[str, Any], clauses: list[Clause],
          outputs: list[Any], refs: dict[str, Any] | None = None) -> tuple[dict[str, Any], str | None]:
    """The stated arguments plus every missing required one, from earlier outputs; or what to ask."""
    props = schema.get("properties", {})
    missing = [p for p in schema.get("required", []) if p not in args]
    # a clause naming a parameter goes to it; the others to the missing parameters they describe
    assigned: dict[str, Clause] = {}
    for clause in clauses:
        target = next((p for p in missing if p not in assigned and clause["noun"] and selector_noun(p) == clause["noun"]),
                      None)
        if target is None and not clause["noun"]:
            target = (next((p for p in missing if p not in assigned and selector_noun(p) == clause["entity"]), None)
                      or next((p for p in missing if p not in assigned
                               and _listed_entity(p, clause["entity"], outputs)), None))
        if target is not None:
            assigned[target] = clause
    for param in missing:
        source = (refs or {}).get(selector_noun(param))
        value, question = _find(param, props.get(param, {}), assigned.get(param),
                                outputs if source is None or param in assigned else [source])
        if question:
            return args, question
        args[param] = _coerce(value, props.get(param, {}))
    return args, None


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    if schema.get("type") == "array" and not isinstance(value, list):
        return [value]
    return value


def _find(param: str, schema: dict[str, Any], clause: Clause | None, outputs: list[Any]) -> tuple[Any, str | None]:
    noun = words(selector_noun(param))
    if clause is not None:
        found = listed(param, clause["entity"], outputs)
        if found is None:
            return None, f"I could not find the {clause['entity']} you mean among the results so far."
        _, items, key = found
        chosen = _apply(clause, items)
        if len(chosen) != 1:
            return None, f"{len(chosen)} {clause['entity']}s match what you said; which {noun} do you mean?"
        return chosen[0][key], None
    value, among = derive(aliases(param, schema), outputs)
    if among:
        return None, f"I found {among} {noun}s; which one do you mean?"
    if value is None:
        return None, f"Which {noun} do you mean? I need it to go on."
    return value, None


def _listed_entity(param: str, entity: str, outputs: list[Any]) -> bool:
    return listed(param, entity, outputs) is not None


def _field_named(item: dict, phrase: str) -> str | None:
    return next((k for k in item if words(k).lower() == phrase.lower()), None)


def _apply(clause: Clause, items: list[dict]) -> list[dict]:
    if "conds" in clause:
        fields = [_field_named(items[0], phrase) for phrase, _ in clause["conds"]]
        if None in fields:
            return []
        return select(items, fields, [_scalar(text, {}) for _, text in clause["conds"]])
    field = _field_named(items[0], clause["field"])
    return select(items, [field], order=clause["order"]) if field else []


# ------------------------------------------------------------------ the closing message
_PAST = {"send": "sent", "pay": "paid", "set": "set", "find": "found", "get": "looked up", "checkout": "checked out",
         "checkin": "checked in", "withdraw": "withdrew", "reply": "replied to", "log": "logged", "ship": "shipped",
         "tag": "tagged", "flag": "flagged", "plan": "planned", "cancel": "cancelled", "transfer": "transferred",
         "top": "topped up", "rebook": "rebooked", "submit": "submitted", "refer": "referred", "commit": "committed"}
_LABELS = ("name", "title", "subject", "status", "state", "date", "_at", "_on", "total", "amount", "price", "balance",
           "quantity", "count", "due", "start", "end", "email", "credit", "fee", "hours", "score", "number", "code")


def past(verb: str) -> str:
    if verb in _PAST:
        return _PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


@lru_cache(maxsize=4096)
def _is_fact(key: str) -> bool:
    return not key.endswith("_id") and any(label in key for label in _LABELS)


def _describe(obj: dict, limit: int = 5) -> str:
    """``order 101 (status "pending", total 54.0)`` from an output object."""
    ident = next(((k, v) for k, v in obj.items() if k.endswith("_id") and not isinstance(v, (dict, list))), None)
    facts = [(k, v) for k, v in obj.items() if v is not None and not isinstance(v, (dict, list)) and _is_fact(k)][:limit]
    head = f"{words(ident[0][:-3])} {ident[1]}" if ident else ""
    body = ", ".join(f"{words(k)} {_show(v)}" for k, v in facts)
    return f"{head} ({body})" if head and body else head or body


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f'"{value}"' if isinstance(value, str) and " " in value else str(value)


def _reply(done: list[tuple[str, Any]], specs: dict, question: str | None) -> str:
    sentences = []
    for tool, res in done:
        verb, _, rest = tool.partition("_")
        if not res.ok:
            sentences.append(f"I could not {tool_phrase(tool)}: {res.error}.")
            continue
        out = res.output
        lists = arrays(out) if isinstance(out, dict) else []
        if specs[tool].read_only and lists:
            path, items = lists[0]
            names = [_describe(i, limit=2) for i in items[:5]]
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            sentences.append(f"I found {len(items)} {entity_of(path)}{'s' if len(items) != 1 else ''}: "
                             + "; ".join(names) + more + ".")
        elif specs[tool].read_only and isinstance(out, dict) and out.get("total") == 0:
            sentences.append(f"I found no {words(rest) or 'results'}.")
        elif specs[tool].read_only:
            sentences.append(f"Here is what I found: {_describe(out) if isinstance(out, dict) else out}.")
        else:
            what = _describe(out) if isinstance(out, dict) else str(out)
            sentences.append(f"I {past(verb)} {words(rest) or 'it'}" + (f": {what}." if what else "."))
    if question:
        sentences.append(question)
    if not sentences:
        return "I could not tell what you would like me to do; could you say it another way?"
    return " ".join(sentences)
