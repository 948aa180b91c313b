"""How a user singles out one element of a listed array, so a value taken from it is determined by
what the user says: the only element listed, a field value that element alone has (a title, an
email, a date), two fields together where one is not enough, or an order (the latest, the lowest)
when the element is a field's strict extreme. Identifiers are never used: users do not know them.
"""
from __future__ import annotations

import re
from itertools import combinations
from typing import Any, Literal

from pydantic import BaseModel

_ID_NAME = re.compile(r"(^id$|_id$|_ids$)")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
# Fields a person names a thing by, tried first.
_NAMING = ("title", "name", "subject", "email", "label", "code", "number", "phone", "sku", "username", "handle")
MAX_VALUE_CHARS = 80  # a description is not how anyone picks an item

ORDER_WORDS = {("date", "max"): "latest", ("date", "min"): "earliest",
               ("number", "max"): "highest", ("number", "min"): "lowest"}


class Selector(BaseModel):
    """How the element an argument was taken from is singled out among the ``among`` listed."""

    kind: Literal["only", "field", "fields", "order"]
    entity: str                          # what one element is ("campaign")
    call: int = 0                        # index of the call whose output listed it
    array: str = ""                      # output path of the array ("campaigns[]")
    fields: list[str] = []
    values: list[Any] = []
    order: Literal["max", "min"] | None = None
    among: int = 1
    text: str = ""                       # the plain words a user says


def singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def entity_of(array_path: str) -> str:
    """``data.campaigns`` -> ``campaign``."""
    return singular(array_path.rsplit(".", 1)[-1].replace("[]", "")).replace("_", " ") or "item"


def words(name: str) -> str:
    return name.replace("_", " ").strip()


def say(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _kind(value: Any) -> str | None:
    """What a field value can select by: text, a date, a number; None for ids, flags, objects."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str) and 0 < len(value) <= MAX_VALUE_CHARS:
        return "date" if _DATE.match(value) else "text"
    return None


def _norm(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _fields(items: list[dict], exclude: set[str]) -> dict[str, str]:
    """Field -> kind, for fields every element has with one kind of usable value."""
    out: dict[str, str] = {}
    for key in items[0]:
        if key in exclude or _ID_NAME.search(key):
            continue
        kinds = {_kind(item.get(key)) if isinstance(item, dict) else None for item in items}
        if len(kinds) == 1 and None not in kinds:
            out[key] = kinds.pop()
    return out


def _rank(field: str, kind: str) -> tuple[int, str]:
    naming = any(n in field for n in _NAMING)
    return (0 if naming and kind == "text" else 1 if kind == "text" else 2 if kind == "date" else 3), field


def selectors_for(items: list[Any], exclude: set[str] = frozenset()) -> list[Selector | None]:
    """The best selector of every element of ``items`` (None where nothing singles it out).

    ``exclude``: fields not to select by (the field the argument itself takes: stating it would
    state the value)."""
    n = len(items)
    if n == 0:
        return []
    if not all(isinstance(i, dict) for i in items):
        return [None] * n
    if n == 1:
        return [Selector(kind="only", entity="", among=1)]
    fields = _fields(items, set(exclude))
    ranked = sorted(fields, key=lambda f: _rank(f, fields[f]))
    counts = {f: _counter(_norm(i[f]) for i in items) for f in ranked}
    out: list[Selector | None] = []
    for item in items:
        out.append(_unique_field(item, ranked, fields, counts, prefer=("text",))
                   or _order(item, items, ranked, fields, "date")
                   or _unique_field(item, ranked, fields, counts, prefer=("date", "number"))
                   or _order(item, items, ranked, fields, "number")
                   or _pair(item, items, ranked))
    return out


def _counter(values) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def _unique_field(item: dict, ranked: list[str], fields: dict[str, str], counts: dict, prefer: tuple[str, ...]):
    for f in ranked:
        if fields[f] in prefer and counts[f][_norm(item[f])] == 1:
            return Selector(kind="field", entity="", fields=[f], values=[item[f]])
    return None


def _order(item: dict, items: list[dict], ranked: list[str], fields: dict[str, str], kind: str):
    for f in ranked:
        if fields[f] != kind:
            continue
        values = [i[f] for i in items]
        for direction, extreme in (("max", max(values)), ("min", min(values))):
            if item[f] == extreme and values.count(extreme) == 1:
                return Selector(kind="order", entity="", fields=[f], order=direction)
    return None


def _pair(item: dict, items: list[dict], ranked: list[str]):
    for a, b in combinations(ranked, 2):
        key = (_norm(item[a]), _norm(item[b]))
        if sum((_norm(i[a]), _norm(i[b])) == key for i in items) == 1:
            return Selector(kind="fields", entity="", fields=[a, b], values=[item[a], item[b]])
    return None


def describe(selector: Selector, entity: str, field_kinds: dict[str, str] | None = None) -> str:
    """Plain words for a selector ("the campaign whose subject is "Trail weekend"")."""
    if selector.kind == "only":
        return f"the only {entity} listed"
    if selector.kind == "order":
        f = selector.fields[0]
        kind = "date" if (field_kinds or {}).get(f) == "date" else "number"
        return f"the {entity} with the {ORDER_WORDS[kind, selector.order]} {words(f)}"
    parts = [f"{words(f)} is {say(v)}" for f, v in zip(selector.fields, selector.values)]
    return f"the {entity} whose " + " and ".join(parts)


def complete(selector: Selector, items: list[dict], call: int, array: str) -> Selector:
    """The selector with where it applies and its words."""
    entity = entity_of(array)
    kinds = {f: _kind(items[0].get(f)) or "" for f in selector.fields} if items and isinstance(items[0], dict) else {}
    done = selector.model_copy(update={"entity": entity, "call": call, "array": array, "among": len(items)})
    done.text = describe(done, entity, kinds)
    return done
