"""Exploring imported tools in the sandbox: reads and writes by effect, tests from the calls.

Every tool is called on fresh episodes of the initial state with arguments drawn from that state
(a row holding as many of its parameters as possible, keys of matching tables) and from its schema
and parameter descriptions (enums, "one of: a, b"). A tool whose successful call changed the state
is a write, one whose calls left it unchanged a read. The first successful call becomes a success
case (its output, and for writes the changed values as JSON-state checks); a call that fails
becomes an error case (a value that does not exist, else an argument Python refuses). What no
call could reach is listed, never guessed.
"""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

READ_PREFIXES = ("get", "list", "search", "find", "view", "check", "show", "describe", "count", "lookup", "read", "query",
                 "fetch", "retrieve", "is", "has", "calculate", "compute", "estimate", "compare", "preview", "validate")
ATTEMPTS = 12
QUIET_READS = 3  # successful calls without a change that make a tool not named like a read a read
MAX_OUTPUT_CHARS = 2000
MAX_STATE_CHECKS = 6


def guess_read_only(name: str) -> bool:
    """A guess from the name's first word (``get_x``, ``findParks``), until exploration knows better."""
    return re.split(r"_|(?<=[a-z0-9])(?=[A-Z])", name)[0].lower() in READ_PREFIXES


def _rows(state: Any, limit: int = 5000) -> list[dict]:
    """Every JSON object in the state, breadth first (entities are rows of some table)."""
    out, queue = [], [state]
    while queue and len(out) < limit:
        node = queue.pop(0)
        if isinstance(node, dict):
            out.append(node)
            queue += [v for v in node.values() if isinstance(v, (dict, list))]
        elif isinstance(node, list):
            queue += [v for v in node if isinstance(v, (dict, list))]
    return out


def _stem(param: str) -> str:
    return re.sub(r"(_?(id|Id|ID|name|Name|key|Key|code|Code|s))$", "", param).lower()


def _table_keys(state: dict, param: str) -> list[Any]:
    stem = _stem(param)
    found = []
    for table, rows in state.items():
        if isinstance(rows, dict) and rows and stem and (table.lower().startswith(stem) or stem in table.lower()):
            found += list(rows)[:5]
    return found


def _described_values(schema: dict) -> list[Any]:
    """Values a parameter's description spells out: quoted words, or a list in parentheses."""
    text = schema.get("description", "")
    quoted = re.findall(r"['\"`]([\w.@:-]{1,40})['\"`]", text)
    listed = [w.strip() for group in re.findall(r"\(([^()]*,[^()]*)\)", text) for w in group.split(",")]
    listed = [w for w in listed if re.fullmatch(r"[\w.@:-]{1,40}", w)]
    return quoted + listed


def _typed(value: Any, schema: dict) -> bool:
    typ = schema.get("type")
    if typ is None:
        any_of = schema.get("anyOf") or []
        return not any_of or any(_typed(value, s) for s in any_of)
    return {"string": isinstance(value, str), "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool), "boolean": isinstance(value, bool),
            "array": isinstance(value, list), "object": isinstance(value, dict), "null": value is None}.get(typ, True)


def _fallbacks(schema: dict) -> list[Any]:
    fmt = schema.get("format") or next((s.get("format") for s in schema.get("anyOf", []) if s.get("format")), None)
    if fmt == "date":
        return ["2030-06-15", "2026-01-15"]
    if fmt == "date-time":
        return ["2030-06-15T10:00:00", "2026-01-15T09:00:00"]
    if "enum" in schema:
        return list(schema["enum"])
    if "default" in schema and schema["default"] is not None:
        return [schema["default"]]
    typ = schema.get("type") or next((s.get("type") for s in schema.get("anyOf", []) if s.get("type") != "null"), None)
    return {"integer": [1, 10], "number": [10.0, 1.5], "boolean": [True, False], "array": [[]], "object": [{}],
            "string": ["test"]}.get(typ, ["test"])


def candidate_arguments(tool: dict, state: dict, rows: list[dict]) -> list[dict[str, Any]]:
    """Argument sets to try, most plausible first (required parameters, then some optional ones)."""
    props = tool["input_schema"].get("properties", {})
    required = list(tool["input_schema"].get("required", []))
    pools: dict[str, list[Any]] = {}
    for name in props:
        schema = props[name]
        values = [r[name] for r in rows if name in r and isinstance(r[name], (str, int, float, bool))][:5]
        values = (values + _table_keys(state, name) + _described_values(schema))[:2]
        if "enum" in schema or schema.get("format") or any(s.get("format") for s in schema.get("anyOf", [])):
            values = _fallbacks(schema) + values  # dates and enumerations: valid values first
        else:
            values.append("new " + re.sub(r"(?<=[a-z0-9])(?=[A-Z])|_", " ", name).lower())  # a value nothing holds yet
        keys = [list(t)[:3] for t in state.values() if isinstance(t, dict)]
        values += [k for group in itertools.zip_longest(*keys) for k in group if k is not None] + _fallbacks(schema)
        typed = [v for v in values if _typed(v, schema)] or values
        pools[name] = list(dict.fromkeys(json.dumps(v) for v in typed))
    ranked = sorted((r for r in rows if any(p in r for p in required)),
                    key=lambda r: -sum(p in r for p in props))[:4]
    sets: list[dict[str, Any]] = []
    for row in ranked:  # one entity's own values (a user's id with that user's password)
        args = {p: row[p] if p in row and _typed(row[p], props[p]) else json.loads(pools[p][0]) for p in required}
        sets.append(args)
    combos = itertools.product(*(range(min(4, len(pools[p]))) for p in required))
    for picks in sorted(itertools.islice(combos, 64), key=sum)[:ATTEMPTS]:  # the likeliest values first, mixed
        sets.append({p: json.loads(pools[p][i]) for p, i in zip(required, picks)})
    optional = [p for p in props if p not in required]
    if optional and sets:  # some tools do nothing without an optional value (an update with only the id)
        sets.append({**sets[0], **{p: json.loads(pools[p][0]) for p in optional}})
    unique = list({json.dumps(s, sort_keys=True): s for s in sets}.values())
    return unique[:ATTEMPTS + 2] or [{}]


def _missing_value(schema: dict) -> Any:
    typ = schema.get("type") or next((s.get("type") for s in schema.get("anyOf", []) if s.get("type") != "null"), "string")
    return {"integer": 987654321, "number": -987654321.5, "string": "no-such-value-0"}.get(typ)


def _expected_output(output: Any) -> Any:
    if len(json.dumps(output)) <= MAX_OUTPUT_CHARS:
        return output
    if isinstance(output, list):
        return {"$len": len(output)}
    if isinstance(output, dict):
        small = {k: v for k, v in output.items() if isinstance(v, (str, int, float, bool)) or v is None}
        return dict(itertools.islice(small.items(), 20)) or {"$any": True}
    return {"$any": True}


def _state_checks(diff) -> list[dict[str, Any]]:
    """JSON-state checks for the values a call changed (paths into the state view)."""
    checks = []
    for change in diff.changes[:MAX_STATE_CHECKS]:
        base = [change.table] if change.table != "_scalars" else []
        if change.kind == "delete":
            checks.append({"path": [*base, change.key], "absent": True})
        elif change.kind == "insert":
            row = change.after
            checks.append({"path": [*base, change.key], "value": row.get("value") if set(row) == {"value"} else
                           {k: v for k, v in row.items() if isinstance(v, (str, int, float, bool)) or v is None}})
        else:
            for col in change.columns[:3]:
                path = [*base, change.key] + ([] if col == "value" and set(change.after) == {"value"} else [col])
                checks.append({"path": path, "absent": True} if col not in change.after else
                              {"path": path, "value": change.after[col]})
    return [c for c in checks if len(json.dumps(c)) <= MAX_OUTPUT_CHARS][:MAX_STATE_CHECKS]


def _try(env, tool: dict, start, state: dict, outputs: list | None = None) -> tuple[tuple[dict, Any, Any, Any] | None, int]:
    """A candidate call from ``start`` (None: the initial state) that changes the state, else the
    first that succeeds (a write may succeed without a change: moving a permit to its own zone);
    and how many candidates succeeded without changing anything."""
    first, quiet = None, 0
    for args in candidate_arguments(tool, state, _rows(state)):
        with env.episode(state=start) as ep:
            result = ep.call(tool["name"], args)
            if result.ok:
                if outputs is not None and len(outputs) < 20:
                    outputs.append(result.output)
                hit = args, result.output, ep.diff(start.data if start is not None else None), ep.snapshot()
                if not hit[2].is_empty:
                    return hit, quiet
                quiet += 1
                first = first or hit
    return first, quiet


def infer_schema(values: list[Any], depth: int = 0) -> dict[str, Any]:
    """A permissive JSON Schema of observed values: the types seen, an object's fields (none
    required), an array's items."""
    types = sorted({{dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
                     float: "number", type(None): "null"}.get(type(v), "string") for v in values})
    if "integer" in types and "number" in types:
        types.remove("integer")
    schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    if depth > 6:
        return {}
    dicts = [v for v in values if isinstance(v, dict)]
    if dicts:
        fields: dict[str, list] = {}
        for d in dicts:
            for k, v in d.items():
                fields.setdefault(k, []).append(v)
        if len(fields) <= 64:  # a record, not a map keyed by ids
            schema["properties"] = {k: infer_schema(vs, depth + 1) for k, vs in fields.items()}
    items = [x for v in values if isinstance(v, list) for x in v[:50]]
    if items:
        schema["items"] = infer_schema(items, depth + 1)
    return schema


def vague(schema: dict) -> bool:
    """An output schema that names no fields (``-> dict``, ``-> list``, no annotation)."""
    if not schema or set(schema) <= {"description"}:
        return True
    if schema.get("type") == "object" and not schema.get("properties"):
        return True
    if schema.get("type") == "array":
        return vague(schema.get("items") or {})
    return False


def _success_step(name: str, args: dict, output: Any, diff) -> dict:
    step = {"call": name, "args": args, "expect": {"ok": True, "output": _expected_output(output)}}
    if diff.is_empty:
        step["expect_unchanged"] = True
    else:
        step["expect_state"] = _state_checks(diff)
    return step


def explore_tools(manifest: dict, module: Any, cls: type, initial: dict | None, enabled: bool = True) -> dict[str, Any]:
    """Classify and test every tool by calling it (inside the sandbox). Updates ``read_only`` in
    ``manifest['tools']``: a tool seen changing the state is a write; one that succeeded and never
    changed it, here or after any other tool's write, a read; one never seen succeeding keeps the
    guess from its name."""
    from envfactory.envs.imports.pyclass import PyClassEnvironment
    from envfactory.envs.runtime.manifest import Manifest
    tools = manifest["tools"]
    probe = Manifest.model_validate({**manifest, "tools": [{**t, "read_only": False} for t in tools]})
    env = PyClassEnvironment(Path("."), probe, cls, initial, module)
    cases, uncovered, reclassified, untested_reads = [], [], [], []
    if not enabled:
        return {"cases": [], "uncovered": [], "reclassified": [], "untested_read_tools": [], "warnings": []}
    found: dict[str, tuple[list[dict], bool]] = {}  # tool -> (steps of its success case, wrote)
    quiet: dict[str, int] = {}  # tool -> successful calls that changed nothing
    seen: dict[str, list] = {}  # tool -> outputs of its successful calls
    after_writes = []  # (the write's step, the state it leaves)
    for tool in tools:
        hit, quiet[tool["name"]] = _try(env, tool, None, env.initial_dict, seen.setdefault(tool["name"], []))
        if hit is not None:
            args, output, diff, snap = hit
            found[tool["name"]] = ([_success_step(tool["name"], args, output, diff)], not diff.is_empty)
            if not diff.is_empty:
                after_writes.append((found[tool["name"]][0][0], snap))
    for tool in tools:  # again after each write: purge needs something revoked, clear something raised
        name = tool["name"]
        if found.get(name, (None, False))[1]:
            continue
        for write_step, snap in after_writes[:6]:
            if write_step["call"] == name:
                continue
            hit, n = _try(env, tool, snap, json.loads(snap.data), seen.setdefault(name, []))
            quiet[name] += n
            if hit is None:
                continue
            args, output, diff, _ = hit
            if name not in found or not diff.is_empty:
                found[name] = ([write_step, _success_step(name, args, output, diff)], not diff.is_empty)
            if not diff.is_empty:
                break
    inferred = []
    for tool in tools:
        name, guessed = tool["name"], tool["read_only"]
        if seen.get(name) and vague(tool["output_schema"]):  # fields the tool graph can link to parameters
            tool["output_schema"] = {**infer_schema(seen[name]),
                                     "description": "inferred from the outputs of explored calls"}
            inferred.append(name)
        if name in found:
            steps, wrote = found[name]
            props = tool["input_schema"].get("properties", {})
            for param, value in steps[-1]["args"].items():  # a value a call succeeded with: grounding may offer it
                if param in props and isinstance(value, (str, int, float)) and "examples" not in props[param]:
                    props[param]["examples"] = [value]
            # A change seen makes a write. Calls that changed nothing are weaker evidence (a write
            # may change nothing for the values tried): a name that reads is enough, otherwise several.
            tool["read_only"] = not wrote and (guessed or quiet[name] >= QUIET_READS)
            if guessed and wrote:
                reclassified.append(name)
            cases.append({"name": f"{name} succeeds" + (" after " + steps[0]["call"] if len(steps) > 1 else
                                                        " on the initial state"), "steps": steps})
        else:
            uncovered.append(f"{name} (success path)")
            if guessed:
                untested_reads.append(name)
        error = _error_case(env, tool)
        if error is not None:
            cases.append(error)
        else:
            uncovered.append(f"{name} (error path)")
    return {"cases": cases, "uncovered": uncovered, "reclassified": reclassified, "untested_read_tools": untested_reads,
            "warnings": [], "inferred_outputs": inferred}


def _error_case(env, tool: dict) -> dict | None:
    """A call that fails: a value that does not exist in a required parameter, else an unknown argument."""
    props = tool["input_schema"].get("properties", {})
    required = tool["input_schema"].get("required", [])
    attempts = []
    state = env.initial_dict
    rows = _rows(state)
    base = candidate_arguments(tool, state, rows)[0]
    for p in required:
        missing = _missing_value(props[p])
        if missing is not None:
            attempts.append({**base, p: missing})
    attempts.append({**base, "no_such_argument": 1})
    for args in attempts:
        with env.episode() as ep:
            result = ep.call(tool["name"], args)
            if not result.ok:
                step = {"call": tool["name"], "args": args,
                        "expect": {"ok": False, "error_kind": result.error_kind,
                                   "error_contains": (result.error or "")[:80]}}
                if ep.diff().is_empty:
                    step["expect_unchanged"] = True
                return {"name": f"{tool['name']} refuses {json.dumps(args)[:80]}", "steps": [step]}
    return None
