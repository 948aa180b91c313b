"""schema.sql and the manifest's tool specs (input and output JSON Schemas) of a skeleton package."""
from __future__ import annotations

from typing import Any

from envfactory.envs.runtime.manifest import Manifest
from envfactory.envs.skeleton.plan import LIST_LIMIT_MAX, OpPlan, Param, creation_order, label, referencing
from envfactory.envs.skeleton.spec import ApiSpec, EntitySpec, FieldSpec

SQL_TYPES = {"integer": "INTEGER", "boolean": "INTEGER", "number": "REAL"}
JSON_TYPES = {"integer": "integer", "number": "number", "boolean": "boolean"}
FORMATS = {"email": "email", "date": "date", "datetime": "date-time"}


def _sql_literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _number(value: float, ftype: str) -> int | float:
    return int(value) if ftype == "integer" or float(value).is_integer() else value


def column_sql(f: FieldSpec) -> str:
    parts = [f'  "{f.name}"', SQL_TYPES.get(f.type, "TEXT")]
    if f.required:
        parts.append("NOT NULL")
    if f.unique:
        parts.append("UNIQUE")
    checks = []
    if f.type == "enum":
        checks.append(f'"{f.name}" IN ({", ".join(_sql_literal(v) for v in f.enum)})')
    if f.type == "boolean":
        checks.append(f'"{f.name}" IN (0, 1)')
    if f.type in ("integer", "number"):
        if f.minimum is not None:
            checks.append(f'"{f.name}" >= {_number(f.minimum, f.type)}')
        if f.maximum is not None:
            checks.append(f'"{f.name}" <= {_number(f.maximum, f.type)}')
    if checks:
        parts.append(f"CHECK ({' AND '.join(checks)})")
    return " ".join(parts)


def _sql_comment(text: str) -> str:
    """Free text from a spec as one SQL comment line: a newline would end the comment and let the
    rest run as SQL."""
    return "-- " + " ".join(text.split())


def render_schema_sql(spec: ApiSpec) -> str:
    out = [_sql_comment(f"{spec.title}: tables generated from the API spec (parents first)."), ""]
    for e in creation_order(spec):
        lines = [f'  "{e.id_field}" INTEGER PRIMARY KEY'] + [column_sql(f) for f in e.fields]
        lines += [f'  FOREIGN KEY ("{f.name}") REFERENCES "{spec.entity(f.references).table_name}" '
                  f'("{spec.entity(f.references).id_field}")' for f in e.fields if f.references]
        out.append(_sql_comment(e.description))
        out.append(f'CREATE TABLE "{e.table_name}" (\n' + ",\n".join(lines) + "\n);")
        for f in e.fields:
            if f.references:
                out.append(f'CREATE INDEX "{e.table_name}_{f.name}" ON "{e.table_name}" ("{f.name}");')
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- JSON Schemas

def value_schema(f: FieldSpec, *, for_input: bool = True) -> dict[str, Any]:
    s: dict[str, Any] = {"type": JSON_TYPES.get(f.type, "string")}
    if for_input:
        if f.type == "enum":
            s["enum"] = list(f.enum)
        if f.type in FORMATS:
            s["format"] = FORMATS[f.type]
        if f.type in ("integer", "number"):
            if f.minimum is not None:
                s["minimum"] = _number(f.minimum, f.type)
            if f.maximum is not None:
                s["maximum"] = _number(f.maximum, f.type)
        if f.references:
            s["minimum"] = 1
        if f.type in ("string", "text", "email") and f.required:
            s["minLength"] = 1
    elif not f.required:
        s["type"] = [s["type"], "null"]
    return s


def _describe(f: FieldSpec, spec: ApiSpec) -> str:
    text = f.description.rstrip(".")
    if f.references:
        text += f"; the id of an existing {label(spec.entity(f.references))}"
    return text


def param_schema(p: Param, plan: OpPlan, spec: ApiSpec) -> dict[str, Any]:
    e = plan.entity
    if p.role == "id":
        return {"type": "integer", "minimum": 1, "description": f"The {label(e)}'s id ({e.id_field})"}
    if p.role == "limit":
        return {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": p.default,
                "description": f"Page size (at most {LIST_LIMIT_MAX})"}
    if p.role == "offset":
        return {"type": "integer", "minimum": 0, "default": 0, "description": "Number of matches to skip"}
    f = p.field
    s = value_schema(f)
    desc = _describe(f, spec)
    lower = desc[0].lower() + desc[1:]
    plural = e.table_name.replace("_", " ")
    if p.role == "lookup":
        s.pop("minLength", None)
        s["minLength"] = 1
        desc += " (matched ignoring case)"
    elif p.role == "filter":
        s.pop("minLength", None)
        if f.type in ("string", "text", "email"):
            desc = f"Only {plural} whose {f.name} contains this text, ignoring case ({lower})"
        else:
            desc = f"Only {plural} with this {f.name} ({lower})"
    elif p.role in ("min", "max"):
        if f.type in ("date", "datetime"):
            bound = "Earliest" if p.role == "min" else "Latest"
        else:
            bound = "Smallest" if p.role == "min" else "Largest"
        desc = f"{bound} {f.name} to include, inclusive ({lower})"
    elif plan.op.kind == "update":
        desc = f"New {f.name}, if it changes ({lower})"
    elif plan.op.kind == "create" and not f.required:
        desc += " (optional)"
    s["description"] = desc
    return s


def row_schema(e: EntitySpec) -> dict[str, Any]:
    props = {e.id_field: {"type": "integer"}}
    props.update({f.name: value_schema(f, for_input=False) for f in e.fields})
    return {"type": "object", "properties": props, "required": list(props)}


def output_schema(plan: OpPlan) -> dict[str, Any]:
    e, kind = plan.entity, plan.op.kind
    if kind == "list":
        return {"type": "object", "properties": {"total": {"type": "integer"},
                                                 e.table_name: {"type": "array", "items": row_schema(e)}},
                "required": ["total", e.table_name]}
    if kind == "delete":
        return {"type": "object", "properties": {"deleted": {"type": "boolean"}, e.id_field: {"type": "integer"}},
                "required": ["deleted", e.id_field]}
    return row_schema(e)


def tool_description(plan: OpPlan, spec: ApiSpec) -> str:
    op, e = plan.op, plan.entity
    text = op.description.rstrip(".") + "."
    extra = {
        "create": f" Returns the new {label(e)}.",
        "get": f" Returns the {label(e)}'s full record.",
        "list": f" Returns the number of matches and one page of {e.table_name.replace('_', ' ')} ordered by id.",
        "update": f" Give at least one field to change; returns the updated {label(e)}.",
        "delete": (f" Refused while other records ({', '.join(c.table_name for c, _ in referencing(spec, e))}) refer to it."
                   if referencing(spec, e) else ""),
    }.get(op.kind, "")
    if op.kind == "transition":
        t = op.transition
        extra = f" Allowed only when {t.field} is {' or '.join(t.from_states)}; sets it to {t.to}."
    text += extra
    if op.errors:
        text += " Errors: " + "; ".join(err.rstrip(".") for err in op.errors) + "."
    return text


def tool_spec(plan: OpPlan, spec: ApiSpec) -> dict[str, Any]:
    props = {p.name: param_schema(p, plan, spec) for p in plan.params}
    return {
        "name": plan.op.name,
        "description": tool_description(plan, spec),
        "read_only": plan.op.kind in ("get", "list"),
        "input_schema": {"type": "object", "properties": props,
                         "required": [p.name for p in plan.params if p.required], "additionalProperties": False},
        "output_schema": output_schema(plan),
        "maskable_arguments": ["limit"] if plan.op.kind == "list" else [],
    }


def build_manifest(spec: ApiSpec, plans: list[OpPlan]) -> tuple[dict[str, Any], Manifest]:
    """The env.json content, and the same checked as a Manifest (the generator's output must be valid)."""
    manifest = {
        "name": spec.name,
        "version": spec.version,
        "domain": spec.domain,
        "description": spec.description,
        "provenance": [s.model_dump(exclude_none=True) for s in spec.sources],
        "clock": Manifest.model_fields["clock"].default,
        "schema": "schema.sql",
        "seed": "seed.json",
        "tools_module": "tools.py",
        "tests": "tests.json",
        "volatile_columns": {},
        "tools": [tool_spec(p, spec) for p in plans],
    }
    return manifest, Manifest.model_validate(manifest)
