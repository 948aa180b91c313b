"""The determinacy check: a task is kept only if what the user says determines every gold argument.

Each argument of each gold call must be stated by the user (its exact value in the user's messages
up to that turn), be the tool's default, be masked (not compared), or be derivable from an earlier
output: a single output field, or one element of a listed array through the recorded selector, which
the user's words must convey (its exact values; an order by a phrase the templates allow, "the
order with the latest placed at", with the field's words). Runs in code on every task before rollouts;
a task that fails is rejected as ``undetermined: <tool>.<param>``.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from envfactory.agents.phrasing import reference_clause
from envfactory.envs.chains.sampling import GoldTrajectory
from envfactory.envs.chains.selectors import Selector

ORDER_PHRASES = {"max": ("latest", "most recent", "newest", "highest", "largest", "biggest", "most expensive"),
                 "min": ("earliest", "oldest", "lowest", "smallest", "cheapest", "least expensive")}
_SHORT = {"at", "on", "of", "by", "to", "is", "in", "id"}


def _standalone(text: str) -> str:
    return rf"(?<![\w.]){re.escape(text)}(?![\w]|\.\d)"


def number_forms(value: int | float) -> list[str]:
    """How a number may be written: 12, 12.5, 12.50 (and 12 for 12.0)."""
    if isinstance(value, int):
        return [str(value)]
    forms = {repr(value), f"{value:g}", f"{value:.2f}"}
    if value == int(value):
        forms.add(str(int(value)))
    return sorted(forms, key=len, reverse=True)


def value_conveyed(value: Any, text: str, param: str = "") -> bool:
    """Whether ``text`` states ``value`` exactly (case aside)."""
    if isinstance(value, bool):  # a flag is stated by naming it ("to store credit yes", "in stock only")
        names = [w for w in param.lower().split("_") if len(w) > 2 and w not in _SHORT]
        return bool(names) and all(re.search(rf"\b{re.escape(w)}", text, re.IGNORECASE) for w in names)
    if isinstance(value, list):
        return all(value_conveyed(v, text, param) for v in value)
    if isinstance(value, (int, float)):
        return any(re.search(_standalone(f), text) for f in number_forms(value))
    if isinstance(value, str):
        return value.strip().lower() in text.lower()
    return False


def field_words(field: str) -> list[str]:
    return [w for w in field.lower().split("_") if w and w not in _SHORT]


def selector_conveyed(selector: Selector | dict[str, Any], text: str) -> bool:
    """Whether ``text`` says what singles the element out (nothing to say for the only one listed)."""
    sel = selector if isinstance(selector, Selector) else Selector.model_validate(selector)
    if sel.kind == "only":
        return True
    if sel.kind == "order":
        lowered = text.lower()
        return (any(p in lowered for p in ORDER_PHRASES[sel.order or "max"])
                and all(w in lowered for f in sel.fields for w in field_words(f)))
    return bool(sel.values) and all(value_conveyed(v, text) for v in sel.values)


_ALIAS = re.compile(r"\b([a-z][a-z0-9]*_id)\b|\ban? ([a-z][a-z0-9]*) id\b")


def aliases(param: str, schema: dict[str, Any]) -> list[str]:
    """Output fields that may fill ``param``: its own name, then the ids its description names
    ("The member to assign (a member_id)" lets ``member_id`` fill ``assignee_id``)."""
    names = [param]
    for m in _ALIAS.finditer(str(schema.get("description") or "").lower()):
        name = m[1] or f"{m[2]}_id"
        if name not in names:
            names.append(name)
    return names


def scalar_field(output: Any, key: str, depth: int = 0) -> Any:
    """The value of ``key`` in an output object (or an object inside it), not inside a list."""
    if not isinstance(output, dict):
        return None
    if key in output and not isinstance(output[key], (dict, list)) and output[key] is not None:
        return output[key]
    if depth < 2:
        for v in output.values():
            if isinstance(v, dict):
                found = scalar_field(v, key, depth + 1)
                if found is not None:
                    return found
    return None


def arrays(output: Any, path: str = "", depth: int = 0) -> list[tuple[str, list[dict]]]:
    """(path, items) of every non-empty array of objects in an output."""
    out = []
    if isinstance(output, dict) and depth < 3:
        for k, v in output.items():
            if isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
                out.append((f"{path}{k}", v))
            elif isinstance(v, dict):
                out += arrays(v, f"{path}{k}.", depth + 1)
    return out


def derive(names: list[str], outputs: list[Any]) -> tuple[Any, int]:
    """A value nobody stated, by the one convention every agent here follows: the most recent output
    that has one of ``names`` (a field of its own, or the only element of a list). Returns the value
    (None if none has it) and, when that output lists several elements instead, how many."""
    for output in reversed(outputs):
        for name in names:
            value = scalar_field(output, name)
            if value is not None:
                return value, 0
        for name in names:
            for _, items in arrays(output):
                if all(name in i for i in items):
                    return (items[0][name], 0) if len(items) == 1 else (None, len(items))
    return None, 0


def listed(param: str, entity: str, outputs: list[Any]) -> tuple[int, list[dict], str] | None:
    """The most recent output listing ``entity`` elements: its index, the elements, and the field of
    theirs that fills ``param``."""
    from envfactory.envs.chains.selectors import entity_of
    keys = [param, f"{entity.replace(' ', '_')}_id", "id"]
    for n in range(len(outputs) - 1, -1, -1):
        for path, items in arrays(outputs[n]):
            if entity_of(path) != entity:
                continue
            key = next((k for k in keys if all(k in i for i in items)), None)
            if key is not None:
                return n, items, key
    return None


def select(items: list[dict], fields: list[str], values: list[Any] | None = None,
           order: str | None = None) -> list[dict]:
    """The elements with these field values (case aside), or at the field's extreme (``max``/``min``)."""
    if order is not None:
        got = [i.get(fields[0]) for i in items]
        if not got or any(v is None for v in got):
            return []
        extreme = max(got) if order == "max" else min(got)
        return [i for i in items if i.get(fields[0]) == extreme]
    return [i for i in items if all(_same(i.get(f), v) for f, v in zip(fields, values or []))]


def _same(value: Any, want: Any) -> bool:
    if isinstance(value, str) and isinstance(want, str):
        return value.strip().lower() == want.strip().lower()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not isinstance(want, bool):
        try:
            return float(value) == float(want)
        except (TypeError, ValueError):
            return False
    return value == want


def order_selectors(chain: GoldTrajectory, missing: list[str]) -> dict[str, Selector] | None:
    """``tool.param`` -> its order selector, when every undetermined argument in ``missing`` is one
    whose order selector the words did not match (a paraphrase the judge role may settle); else None."""
    found: dict[str, Selector] = {}
    for item in missing:
        tool, _, param = item.partition(".")
        sel = next((c.selectors.get(param) for c in chain.calls if c.tool == tool and param in c.selectors), None)
        if sel is None or sel.kind != "order":
            return None
        found[item] = sel
    return found or None


def undetermined(chain: GoldTrajectory, queries: list[str], turns: list[list[int]],
                 input_schema: Callable[[str, str], dict[str, Any]]) -> list[str]:
    """``tool.param`` of every gold argument the user's messages (up to its turn) do not determine.

    ``input_schema(env, tool)``: the tool's input schema (for defaults)."""
    found: list[str] = []
    for n, indices in enumerate(turns):
        text = "\n".join(queries[:n + 1])
        for i in indices:
            call = chain.calls[i]
            props = input_schema(call.env, call.tool).get("properties", {})
            for param, value in call.arguments.items():
                if param in call.masked_arguments:
                    continue
                if "default" in props.get(param, {}) and props[param]["default"] == value:
                    continue
                binding = call.bindings.get(param)
                if binding is not None and binding.source == "call":
                    earlier = [c.output for c in chain.calls[:i]]
                    selector = call.selectors.get(param)
                    if "[]" not in (binding.field or "") or (selector is not None and selector.kind == "only"):
                        # nobody says it: the most recent output that has it gives this value, or the
                        # user says which earlier result it comes from ("using the member from ...")
                        names = aliases(param, props.get(param, {}))
                        ok = derive(names, earlier)[0] == value
                        if not ok and binding.call is not None:
                            producer = chain.calls[binding.call].tool
                            latest = max(j for j in range(i) if chain.calls[j].tool == producer)
                            ok = (reference_clause(param, producer) in queries[n].lower() and latest == binding.call
                                  and derive(names, [chain.calls[latest].output])[0] == value)
                    else:
                        # the element the selector names, in the most recent list of its kind
                        source = selector and listed(param, selector.entity, earlier)
                        chosen = select(source[1], selector.fields, selector.values, selector.order) if source else []
                        ok = (len(chosen) == 1 and source[0] == binding.call and chosen[0][source[2]] == value
                              and selector_conveyed(selector, text))
                else:
                    ok = value_conveyed(value, text, param)
                if not ok:
                    found.append(f"{call.tool}.{param}")
    return found
