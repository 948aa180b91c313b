"""tools.py of a skeleton package: one plain function per operation over the ctx helpers, with the
spec's rules (references exist, unique values stay unique ignoring case, deletes refused while rows
refer to the row, transitions only from their documented states, updates only when they change something
and the row's workflow is not over) and errors that name entity and id.
The shared checks sit in private helpers so a model enriching the file edits one tool at a time."""
from __future__ import annotations

import keyword

from envfactory.envs.runtime.pyparse import parse_python
from envfactory.envs.skeleton.plan import OpPlan, final_states, label, referencing
from envfactory.envs.skeleton.spec import ApiSpec

HELPERS = '''


def _out(table, row):
    """A row as JSON: 0/1 columns declared boolean come back as booleans."""
    for column in BOOLEAN_COLUMNS.get(table, ()):
        if row[column] is not None:
            row[column] = bool(row[column])
    return row


def _row(ctx, table, key, what):
    return _out(table, ctx.get(table, key, what))


def _check_references(ctx, table, values):
    for column, (parent, what) in REFERENCES.get(table, {}).items():
        if values.get(column) is not None:
            ctx.get(parent, values[column], what)


def _check_unique(ctx, table, what, values, key=None):
    for column in UNIQUE.get(table, ()):
        value = values.get(column)
        if value is None:
            continue
        test = f'lower("{column}") = lower(?)' if isinstance(value, str) else f'"{column}" = ?'
        clash = ctx.one(f'SELECT "{ID_COLUMNS[table]}" AS id FROM "{table}" WHERE {test}', (value,))
        if clash is not None and clash["id"] != key:
            raise ToolError(f"{what} {clash['id']} already has {column} {value!r}; {column} must be unique")


def _refuse_if_referenced(ctx, table, key, what):
    for child, column in REFERENCED_BY.get(table, ()):
        count = ctx.scalar(f'SELECT COUNT(*) FROM "{child}" WHERE "{column}" = ?', (key,))
        if count:
            raise ToolError(f"{what} {key} cannot be deleted: {count} row(s) in {child} refer to it ({child}.{column})")


def _list(ctx, table, exact=None, contains=None, at_least=None, at_most=None, limit=20, offset=0):
    where, params = [], []
    for column, value in (exact or {}).items():
        if value is not None:
            where.append(f'"{column}" = ?')
            params.append(int(value) if isinstance(value, bool) else value)
    for column, value in (contains or {}).items():
        if value is not None:
            where.append(f'instr(lower("{column}"), lower(?)) > 0')
            params.append(value)
    for column, value in (at_least or {}).items():
        if value is not None:
            where.append(f'"{column}" >= ?')
            params.append(value)
    for column, value in (at_most or {}).items():
        if value is not None:
            where.append(f'"{column}" <= ?')
            params.append(value)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = ctx.scalar(f'SELECT COUNT(*) FROM "{table}"{clause}', params)
    rows = ctx.all(f'SELECT * FROM "{table}"{clause} ORDER BY "{ID_COLUMNS[table]}" LIMIT ? OFFSET ?',
                   [*params, limit, offset])
    return {"total": total, table: [_out(table, r) for r in rows]}


def _check_changes(ctx, table, key, what, tool, changes):
    """The row to update, refused when its workflow is over or when the update would change nothing:
    a write that reports success without doing anything misleads the caller."""
    row = ctx.get(table, key, what)
    for column, states in FINAL_STATES.get(table, {}).items():
        if row[column] in states:
            raise ToolError(f"{what} {key} is {row[column]}; {tool} does not apply to a {row[column]} {what}")
    if all(row[column] == value for column, value in changes.items()):
        given = ", ".join(f"{column} {value!r}" for column, value in changes.items())
        raise ToolError(f"{what} {key} already has {given}; nothing to change")
    return row


def _transition(ctx, table, key, what, column, allowed, to, tool):
    row = ctx.get(table, key, what)
    if row[column] not in allowed:
        raise ToolError(f"{what} {key} is {row[column] or 'unset'}; {tool} applies only when {column} is "
                        f"{' or '.join(allowed)}")
    ctx.update(table, key, {column: to})
    return _row(ctx, table, key, what)
'''


def _py_text(text: str) -> str:
    """Free text from a spec (possibly model-written) made inert inside a docstring: every
    backslash and double quote escaped, so it can neither close the string nor run as code."""
    return text.replace("\\", "\\\\").replace('"', '\\"').strip()


def _doc(text: str) -> str:
    return '    """' + _py_text(text) + '"""\n'


def _dict_literal(names: list[str], values: dict[str, str]) -> str:
    return "{" + ", ".join(f"{n!r}: {values[n]}" for n in names) + "}"


class CodeWriter:
    def __init__(self, spec: ApiSpec, plans: list[OpPlan]):
        self.spec = spec
        self.plans = plans

    def render(self) -> str:
        spec = self.spec
        head = [f'"""{_py_text(spec.title)} tools, written by envfactory\'s skeleton generator (deterministic tier) from the',
                'API spec. Rules enforced: references must exist, unique values stay unique (ignoring case), a',
                'delete is refused while other rows refer to the row, transitions run only from their states,',
                'an update must change something and is refused once the row reached a final state."""',
                "from envfactory.envs import ToolError", ""]
        consts = {
            "ID_COLUMNS": {e.table_name: e.id_field for e in spec.entities},
            "BOOLEAN_COLUMNS": {e.table_name: [f.name for f in e.fields if f.type == "boolean"]
                                for e in spec.entities if any(f.type == "boolean" for f in e.fields)},
            "REFERENCES": {e.table_name: {f.name: (spec.entity(f.references).table_name, label(spec.entity(f.references)))
                                          for f in e.fields if f.references}
                           for e in spec.entities if any(f.references for f in e.fields)},
            "REFERENCED_BY": {e.table_name: [(c.table_name, f.name) for c, f in referencing(spec, e)]
                              for e in spec.entities if referencing(spec, e)},
            "UNIQUE": {e.table_name: [f.name for f in e.fields if f.unique]
                       for e in spec.entities if any(f.unique for f in e.fields)},
            "FINAL_STATES": {e.table_name: final_states(spec, e) for e in spec.entities if final_states(spec, e)},
        }
        comments = {"ID_COLUMNS": "table -> primary key", "BOOLEAN_COLUMNS": "columns stored as 0/1, returned as booleans",
                    "REFERENCES": "table -> {column: (parent table, what the parent is called)}",
                    "REFERENCED_BY": "table -> rows elsewhere that must be gone before a delete",
                    "UNIQUE": "columns whose values must be unique (text ignoring case)",
                    "FINAL_STATES": "table -> {workflow column: states no transition leaves}: updates are refused there"}
        for name, value in consts.items():
            head.append(f"# {comments[name]}")
            head.append(f"{name} = {value!r}")
        body = [HELPERS]
        for plan in self.plans:
            body.append("\n\n" + getattr(self, f"_{plan.op.kind}")(plan))
        code = "\n".join(head) + "".join(body)
        parse_python(code)  # never hand out code that does not parse
        return code

    # -- signatures
    @staticmethod
    def _signature(plan: OpPlan) -> str:
        parts = ["ctx"]
        required = [p for p in plan.params if p.required]
        optional = [p for p in plan.params if not p.required]
        parts += [p.name for p in required]
        parts += [f"{p.name}={p.default!r}" for p in optional]
        assert not any(keyword.iskeyword(p.name) for p in plan.params)
        return f"def {plan.op.name}({', '.join(parts)}):\n"

    # -- one renderer per kind
    def _create(self, plan: OpPlan) -> str:
        t, what = plan.table, label(plan.entity)
        names = [p.name for p in plan.params]
        code = self._signature(plan) + _doc(plan.op.description)
        code += f"    _values = {_dict_literal(names, {n: n for n in names})}\n"
        for fname, value in plan.implied.items():
            expr = {"$today": "ctx.today()", "$now": "ctx.now()"}.get(value, repr(value))
            code += f"    _values[{fname!r}] = {expr}  # required, not taken by this tool\n"
        code += (f"    _check_references(ctx, {t!r}, _values)\n"
                 f"    _check_unique(ctx, {t!r}, {what!r}, _values)\n"
                 f"    _new_id = ctx.insert({t!r}, _values)\n"
                 f"    return _row(ctx, {t!r}, _new_id, {what!r})\n")
        return code

    def _get(self, plan: OpPlan) -> str:
        t, what = plan.table, label(plan.entity)
        code = self._signature(plan) + _doc(plan.op.description)
        p = plan.params[0]
        if p.role == "id":
            return code + f"    return _row(ctx, {t!r}, {p.name}, {what!r})\n"
        if p.field.type in ("string", "text", "email", "date", "datetime", "enum"):
            test, arg = f'lower("{p.name}") = lower(?)', f"{p.name}.strip()"
        else:
            test, arg = f'"{p.name}" = ?', p.name
        return code + (f"    _found = ctx.one('SELECT * FROM \"{t}\" WHERE {test}', ({arg},))\n"
                       f"    if _found is None:\n"
                       f"        raise ToolError(f\"{what} with {p.name} {{{p.name}!r}} does not exist\")\n"
                       f"    return _out({t!r}, _found)\n")

    def _list(self, plan: OpPlan) -> str:
        code = self._signature(plan) + _doc(plan.op.description)
        groups: dict[str, dict[str, str]] = {"exact": {}, "contains": {}, "at_least": {}, "at_most": {}}
        for p in plan.params:
            if p.role == "filter":
                key = "contains" if p.field.type in ("string", "text", "email") else "exact"
                groups[key][p.field.name] = p.name
            elif p.role in ("min", "max"):
                groups["at_least" if p.role == "min" else "at_most"][p.field.name] = p.name
        args = "".join(f", {g}={_dict_literal(list(v), v)}" for g, v in groups.items() if v)
        return code + f"    return _list(ctx, {plan.table!r}{args}, limit=limit, offset=offset)\n"

    def _update(self, plan: OpPlan) -> str:
        t, what, idn = plan.table, label(plan.entity), plan.id_field
        names = [p.name for p in plan.params if p.role == "value"]
        code = self._signature(plan) + _doc(plan.op.description)
        code += (f"    ctx.get({t!r}, {idn}, {what!r})\n"
                 f"    _changes = {{_k: _v for _k, _v in {_dict_literal(names, {n: n for n in names})}.items() if _v is not None}}\n"
                 f"    if not _changes:\n"
                 f"        raise ToolError({plan.op.name + ' needs at least one field to change: ' + ', '.join(names)!r})\n"
                 f"    _check_changes(ctx, {t!r}, {idn}, {what!r}, {plan.op.name!r}, _changes)\n"
                 f"    _check_references(ctx, {t!r}, _changes)\n"
                 f"    _check_unique(ctx, {t!r}, {what!r}, _changes, key={idn})\n"
                 f"    ctx.update({t!r}, {idn}, _changes)\n"
                 f"    return _row(ctx, {t!r}, {idn}, {what!r})\n")
        return code

    def _delete(self, plan: OpPlan) -> str:
        t, what, idn = plan.table, label(plan.entity), plan.id_field
        return (self._signature(plan) + _doc(plan.op.description)
                + f"    ctx.get({t!r}, {idn}, {what!r})\n"
                  f"    _refuse_if_referenced(ctx, {t!r}, {idn}, {what!r})\n"
                  f"    ctx.execute('DELETE FROM \"{t}\" WHERE \"{idn}\" = ?', ({idn},))\n"
                  f"    return {{'deleted': True, {idn!r}: {idn}}}\n")

    def _transition(self, plan: OpPlan) -> str:
        t, what, idn, tr = plan.table, label(plan.entity), plan.id_field, plan.op.transition
        return (self._signature(plan) + _doc(plan.op.description)
                + f"    return _transition(ctx, {t!r}, {idn}, {what!r}, {tr.field!r}, {tuple(tr.from_states)!r}, "
                  f"{tr.to!r}, {plan.op.name!r})\n")


def render_tools(spec: ApiSpec, plans: list[OpPlan]) -> str:
    return CodeWriter(spec, plans).render()
