"""The skeleton generator's reading of an ``ApiSpec``: what each tool takes, in what order tables are
created, and whether the spec can be generated at all.

Both the code writer (``skeleton_code``) and the offline test writer (``skeleton_tests``) follow the
conventions fixed here, so tests written from the spec and the tool schemas agree with generated code
without reading it:

- create takes ``op.fields`` (all fields when empty); a required field it does not take gets a default
  (an enum's first value, today's date, the clock's time, false, the minimum or 0);
- get takes the id, or only the ``lookup_by`` field (matched case-insensitively);
- list filters: exact for enums, booleans and references, case-insensitive substring for text,
  ``min_<f>``/``max_<f>`` for numbers, ``<f>_from``/``<f>_to`` for dates; plus ``limit`` and ``offset``;
  it returns ``{"total": n, "<table>": [rows ordered by id]}``;
- update takes the id and any of ``op.fields`` (all fields when empty), at least one, and must change
  something: values equal to the row's are refused, and so is a row in a final state of its workflow
  (a state transitions lead to and none leaves, e.g. a returned checkout cannot be renewed);
- delete and transition take the id; delete returns ``{"deleted": true, "<entity>_id": id}``.
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass, field as dc_field
from typing import Any

from envfactory.envs.skeleton.spec import ApiSpec, EntitySpec, FieldSpec, OperationSpec

MISSING_ID = 999999          # an id no seed row has (seed_rows is at most 5000)
LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 50
TEXT_TYPES = ("string", "text", "email")
RANGE_TYPES = ("integer", "number", "date", "datetime")


class SkeletonError(ValueError):
    """The spec cannot be turned into a package; the message lists every reason."""

    def __init__(self, spec_name: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"spec {spec_name!r} cannot be generated: " + "; ".join(problems))


def label(entity: EntitySpec) -> str:
    """How messages name an entity ('line_item' -> 'line item')."""
    return entity.name.replace("_", " ")


@dataclass
class Param:
    name: str
    role: str                       # id | lookup | value | filter | min | max | limit | offset
    field: FieldSpec | None = None
    required: bool = False
    default: Any = None


@dataclass
class OpPlan:
    op: OperationSpec
    entity: EntitySpec
    params: list[Param] = dc_field(default_factory=list)
    implied: dict[str, Any] = dc_field(default_factory=dict)   # create: required fields not taken -> default

    @property
    def table(self) -> str:
        return self.entity.table_name

    @property
    def id_field(self) -> str:
        return self.entity.id_field

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def implied_default(f: FieldSpec) -> Any:
    """The value create stores for a required field it does not take ("today"/"now" read the clock)."""
    if f.type == "enum":
        return f.enum[0]
    if f.type == "date":
        return "$today"
    if f.type == "datetime":
        return "$now"
    if f.type == "boolean":
        return False
    if f.type in ("integer", "number"):
        low = f.minimum if f.minimum is not None else 0
        if f.maximum is not None and low > f.maximum:
            low = f.maximum
        return int(low) if f.type == "integer" else float(low)
    return None


def resolve_default(value: Any, clock: str) -> Any:
    if value == "$today":
        return clock[:10]
    if value == "$now":
        return clock
    return value


def taken_fields(entity: EntitySpec, op: OperationSpec) -> list[FieldSpec]:
    names = op.fields or [f.name for f in entity.fields]
    return [entity.field(n) for n in names]


def plan_operation(spec: ApiSpec, op: OperationSpec) -> OpPlan:
    entity = spec.entity(op.entity)
    plan = OpPlan(op, entity)
    idp = Param(entity.id_field, "id", required=True)
    if op.kind == "create":
        taken = taken_fields(entity, op)
        for f in taken:
            plan.params.append(Param(f.name, "value", f, required=f.required))
        for f in entity.fields:
            if f.required and f not in taken:
                plan.implied[f.name] = implied_default(f)
    elif op.kind == "get":
        if op.lookup_by:
            plan.params.append(Param(op.lookup_by, "lookup", entity.field(op.lookup_by), required=True))
        else:
            plan.params.append(idp)
    elif op.kind == "list":
        for name in op.fields:
            f = entity.field(name)
            if f.type in RANGE_TYPES and not f.references:
                low, high = (f"{name}_from", f"{name}_to") if f.type in ("date", "datetime") else (f"min_{name}", f"max_{name}")
                plan.params += [Param(low, "min", f), Param(high, "max", f)]
            else:
                plan.params.append(Param(name, "filter", f))
        plan.params += [Param("limit", "limit", default=LIST_LIMIT_DEFAULT), Param("offset", "offset", default=0)]
    elif op.kind == "update":
        plan.params.append(idp)
        plan.params += [Param(f.name, "value", f) for f in taken_fields(entity, op)]
    else:  # delete, transition
        plan.params.append(idp)
    return plan


def creation_order(spec: ApiSpec) -> list[EntitySpec]:
    """Entities with parents first (self-references allowed); raises on a cycle."""
    done: list[EntitySpec] = []
    pending = list(spec.entities)
    while pending:
        ready = [e for e in pending
                 if all(f.references in {d.name for d in done} or f.references == e.name
                        for f in e.fields if f.references)]
        if not ready:
            names = ", ".join(e.name for e in pending)
            raise SkeletonError(spec.name, [f"the references between {names} form a cycle; "
                                            "break it (one side can hold the other's id) so tables can be created parents first"])
        done += ready
        pending = [e for e in pending if e not in ready]
    return done


def check_generable(spec: ApiSpec) -> list[OpPlan]:
    """Plans of every operation, or a SkeletonError listing every reason the spec cannot be generated."""
    problems: list[str] = []
    creation_order(spec)
    for e in spec.entities:
        for f in e.fields:
            if keyword.iskeyword(f.name) or f.name == "ctx":
                problems.append(f"entity {e.name!r}: field {f.name!r} is a reserved word in the generated Python; rename it")
            if f.minimum is not None and f.maximum is not None and f.minimum > f.maximum:
                problems.append(f"entity {e.name!r}: field {f.name!r} has minimum {f.minimum} above maximum {f.maximum}")
            if f.unique:
                room = {"boolean": 2, "enum": len(f.enum)}.get(f.type)
                if f.type == "integer" and f.minimum is not None and f.maximum is not None:
                    room = int(f.maximum) - int(f.minimum) + 1
                if room is not None and room < e.seed_rows:
                    problems.append(f"entity {e.name!r}: unique field {f.name!r} allows only {room} values "
                                    f"but {e.seed_rows} seed rows are asked")
            if f.references and f.required and f.references == e.name:
                problems.append(f"entity {e.name!r}: self-reference {f.name!r} must be optional (the first row has no parent)")
    plans = []
    for op in spec.operations:
        plan = plan_operation(spec, op)
        plans.append(plan)
        names = [p.name for p in plan.params]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"operation {op.name!r}: parameter {dup!r} would be declared twice (a field clashes with a generated filter)")
        if op.kind == "create":
            for fname, value in plan.implied.items():
                f = plan.entity.field(fname)
                if value is None or f.unique or f.references:
                    why = "a reference" if f.references else "unique" if f.unique else f"a {f.type}"
                    problems.append(f"operation {op.name!r}: required field {fname!r} is {why} with no sensible default; "
                                    f"add it to the operation's fields")
    if problems:
        raise SkeletonError(spec.name, problems)
    return plans


def final_states(spec: ApiSpec, entity: EntitySpec) -> dict[str, list[str]]:
    """Workflow field -> its final states: reached by a transition, left by none (an update of a row in
    one is a domain error: the row's business is over)."""
    reached: dict[str, set[str]] = {}
    left: dict[str, set[str]] = {}
    for op in spec.operations:
        if op.kind == "transition" and op.entity == entity.name and op.transition is not None:
            reached.setdefault(op.transition.field, set()).add(op.transition.to)
            left.setdefault(op.transition.field, set()).update(op.transition.from_states)
    return {f: sorted(states - left[f]) for f, states in reached.items() if states - left[f]}


def referencing(spec: ApiSpec, entity: EntitySpec) -> list[tuple[EntitySpec, FieldSpec]]:
    """(child entity, field) pairs whose field points at ``entity``."""
    return [(e, f) for e in spec.entities for f in e.fields if f.references == entity.name]
