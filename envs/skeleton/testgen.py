"""tests.json for a skeleton package, written from the spec, the tool specs and the seed rows only
(never from tools.py): this is the Test agent's offline tier.

For every tool a success case and an error case; every successful write is followed by ``expect_state``
SQL checks, every failed write by ``expect_unchanged``; and one case chains dependent calls through
``save`` and ``"$name.path"`` references (as long as the spec's operations allow, aiming at four or more).
Expected values come from the seed rows and the conventions in ``skeleton_plan``; each case runs on a
fresh episode, so a row created in a case gets the id after the seed's last one.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from envfactory.envs.runtime.manifest import Manifest, ToolSpec
from envfactory.envs.skeleton.seed import SeedWriter
from envfactory.envs.skeleton.plan import (MISSING_ID, OpPlan, final_states, label, plan_operation, referencing,
                                          resolve_default)
from envfactory.envs.skeleton.spec import ApiSpec, EntitySpec, FieldSpec

Rows = dict[str, list[dict[str, Any]]]


def _sql(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _db(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


class TestWriter:
    __test__ = False  # not a pytest test class
    def __init__(self, spec: ApiSpec, tools: Iterable[ToolSpec], seed: Rows, clock: str):
        self.spec = spec
        self.tools = {t.name: t for t in tools}
        self.seed = seed
        self.clock = clock
        self.today = dt.date.fromisoformat(clock[:10])
        self.plans = []
        for op in spec.operations:
            if op.name not in self.tools:
                raise ValueError(f"operation {op.name!r} of spec {spec.name!r} has no tool in the manifest")
            self.plans.append(plan_operation(spec, op))
        self.counter = 0
        self.sampler = SeedWriter(spec, -1, clock)  # fresh values from its own random stream

    # -- seed facts
    def rows(self, e: EntitySpec) -> list[dict[str, Any]]:
        return self.seed.get(e.table_name, [])

    def out_row(self, e: EntitySpec, row: dict[str, Any]) -> dict[str, Any]:
        out = {e.id_field: row[e.id_field]}
        for f in e.fields:
            v = row.get(f.name)
            out[f.name] = bool(v) if f.type == "boolean" and v is not None else v
        return out

    def referenced(self, e: EntitySpec) -> dict[int, str]:
        """id -> the first table whose rows refer to it."""
        found: dict[int, str] = {}
        for child, f in referencing(self.spec, e):
            for row in self.rows(child):
                if row.get(f.name) is not None and not (child is e and row[f.name] == row[child.id_field]):
                    found.setdefault(row[f.name], child.table_name)
        return found

    def next_id(self, e: EntitySpec) -> int:
        return max((r[e.id_field] for r in self.rows(e)), default=0) + 1

    # -- values no seed row has (or, with ``current``, different from it)
    def fresh(self, e: EntitySpec, f: FieldSpec, current: Any = None) -> Any:
        self.counter += 1
        k = self.counter
        taken = {(r.get(f.name).lower() if isinstance(r.get(f.name), str) else r.get(f.name)) for r in self.rows(e)}
        if f.references:
            parent = self.spec.entity(f.references)
            ids = [r[parent.id_field] for r in self.rows(parent)]
            if f.unique:  # one-to-one: a parent no row points at yet
                ids = [i for i in ids if i not in taken] or ids
            return next((i for i in ids if i != current), ids[0] if ids else 1)
        if f.type == "enum":
            options = [v for v in f.enum if v != current]
            return options[0] if options else f.enum[0]
        if f.type == "boolean":
            return not current if current is not None else True
        if f.type in ("integer", "number"):
            high = f.maximum if f.maximum is not None else max(f.minimum or 0, 0) + 10_000
            low = f.minimum if f.minimum is not None else min(0, high)
            candidates = [low + 7 + k, high - k, low + k, low, high]
            if f.type == "number":
                candidates = [low + 7.5 + k, *candidates]
            for c in candidates:
                if low <= c <= high and c != current and (not f.unique or c not in taken):
                    return int(c) if f.type == "integer" else float(c)
            for c in range(int(low), int(high) + 1):
                if c != current and c not in taken:
                    return c if f.type == "integer" else float(c)
            return current
        if f.type in ("date", "datetime") and not f.unique:
            for attempt in range(20):  # a plausible date for the field (a birth date, a due date, ...)
                value = self.sampler.sample(e, f, k + attempt)
                if value != current:
                    return value
        if f.type == "date":
            day = self.today + dt.timedelta(days=10 + k)
            while day.isoformat() in taken or day.isoformat() == current:
                day += dt.timedelta(days=1)
            return day.isoformat()
        if f.type == "datetime":
            day = self.today + dt.timedelta(days=10 + k)
            while f"{day.isoformat()}T10:30:00Z" in taken or f"{day.isoformat()}T10:30:00Z" == current:
                day += dt.timedelta(days=1)
            return f"{day.isoformat()}T10:30:00Z"
        for attempt in range(20):  # a realistic value first, as the seed writer would make
            value = self.sampler.sample(e, f, k + attempt)
            if value != current and (not f.unique or value.lower() not in taken):
                return value
        if f.type == "email":
            return f"test.{e.name.replace('_', '.')}.{k}@example.net"
        if f.type == "text":
            return f"Written by the test suite ({k})."
        value = f"Test {f.name.replace('_', ' ')} {k}"
        while value.lower() in taken:
            k += 100
            value = f"Test {f.name.replace('_', ' ')} {k}"
        return value

    # -- step builders
    @staticmethod
    def ok(call: str, args: dict, output: Any = None, save: str | None = None, state: list | None = None) -> dict:
        step: dict[str, Any] = {"call": call, "args": args, "expect": {"ok": True}}
        if output is not None:
            step["expect"]["output"] = output
        if save:
            step["save"] = save
        if state:
            step["expect_state"] = state
        return step

    @staticmethod
    def err(call: str, args: dict, contains: str, kind: str = "domain", write: bool = True) -> dict:
        step = {"call": call, "args": args, "expect": {"ok": False, "error_contains": contains, "error_kind": kind}}
        if write:
            step["expect_unchanged"] = True
        return step

    def row_state(self, e: EntitySpec, key: int, values: dict[str, Any]) -> list[dict]:
        cols = list(values)
        return [{"sql": f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{e.table_name}" '
                        f'WHERE "{e.id_field}" = {key}',
                 "rows": [[_db(values[c]) for c in cols]]}]

    def count_state(self, e: EntitySpec, n: int) -> dict:
        return {"sql": f'SELECT COUNT(*) FROM "{e.table_name}"', "rows": [[n]]}

    # -- cases per kind
    def create_values(self, plan: OpPlan, overrides: dict | None = None) -> dict[str, Any]:
        e = plan.entity
        args = {}
        for p in plan.params:
            args[p.name] = self.fresh(e, p.field)
        args.update(overrides or {})
        return args

    def created_row(self, plan: OpPlan, args: dict) -> dict[str, Any]:
        values = {f.name: None for f in plan.entity.fields}
        values.update(args)
        values.update({k: resolve_default(v, self.clock) for k, v in plan.implied.items()})
        return values

    def cases_create(self, plan: OpPlan) -> list[dict]:
        e, name = plan.entity, plan.op.name
        args = self.create_values(plan)
        new_id, n = self.next_id(e), len(self.rows(e))
        values = self.created_row(plan, args)
        success = {"name": f"{name} stores a new {label(e)}", "steps": [self.ok(
            name, args, {e.id_field: new_id, **args},
            state=[self.count_state(e, n + 1)] + self.row_state(e, new_id, values))]}
        ref = next((p for p in plan.params if p.field.references), None)
        uniq = next((p for p in plan.params if p.field.unique and self.rows(e)), None)
        required = next((p for p in plan.params if p.required), None)
        if ref:
            parent = label(self.spec.entity(ref.field.references))
            step = self.err(name, {**args, ref.name: MISSING_ID}, f"{parent} {MISSING_ID} does not exist")
            why = f"a missing {parent}"
        elif uniq:
            taken = self.rows(e)[0][uniq.name]
            step = self.err(name, {**args, uniq.name: taken.upper() if isinstance(taken, str) else taken},
                            f"already has {uniq.name}")
            why = f"a duplicate {uniq.name}"
        elif required:
            step = self.err(name, {k: v for k, v in args.items() if k != required.name}, required.name,
                            "invalid_arguments")
            why = f"a missing {required.name}"
        else:
            step = self.err(name, {**args, "unexpected_argument": 1}, "unexpected_argument", "invalid_arguments")
            why = "an unknown argument"
        return [success, {"name": f"{name} refuses {why}", "steps": [step]}]

    def cases_get(self, plan: OpPlan) -> list[dict]:
        e, name, p = plan.entity, plan.op.name, plan.params[0]
        rows = self.rows(e)
        if not rows:
            return []
        row = rows[0]
        if p.role == "id":
            ok_args, bad = {p.name: row[e.id_field]}, {p.name: MISSING_ID}
            contains = f"{label(e)} {MISSING_ID} does not exist"
        else:
            v = row[p.name]
            ok_args = {p.name: v.upper() if isinstance(v, str) and p.field.type in ("string", "email") else v}
            bad = {p.name: self.fresh(e, p.field)}
            contains = "does not exist"
        return [{"name": f"{name} returns the full record", "steps": [self.ok(name, ok_args, self.out_row(e, row))]},
                {"name": f"{name} reports a missing {label(e)}", "steps": [self.err(name, bad, contains, write=False)]}]

    def matches(self, plan: OpPlan, args: dict) -> list[dict]:
        out = []
        for row in self.rows(plan.entity):
            keep = True
            for p in plan.params:
                if p.name not in args or p.role in ("limit", "offset"):
                    continue
                want, have = args[p.name], row.get(p.field.name)
                if have is None:
                    keep = False
                elif p.role == "filter":
                    keep = (want.lower() in have.lower()) if p.field.type in ("string", "text", "email") \
                        else _db(want) == _db(have)
                elif p.role == "min":
                    keep = have >= want
                elif p.role == "max":
                    keep = have <= want
                if not keep:
                    break
            if keep:
                out.append(row)
        return out

    def cases_list(self, plan: OpPlan) -> list[dict]:
        e, name, idf = plan.entity, plan.op.name, plan.id_field
        rows = self.rows(e)
        page = rows[1:4]
        steps = [self.ok(name, {"limit": 3, "offset": 1},
                         {"total": len(rows), e.table_name: [{idf: r[idf]} for r in page]})]
        filters = [p for p in plan.params if p.role in ("filter", "min", "max")]
        sample = next((r for r in rows if filters and r[filters[0].field.name] is not None), None)
        if sample is not None:
            p = filters[0]
            v = sample[p.field.name]
            if isinstance(v, str) and p.role == "filter" and p.field.type in ("string", "text", "email"):
                v = v.upper()
            args = {p.name: v, "limit": 5}
            hits = self.matches(plan, args)
            steps.append(self.ok(name, args, {"total": len(hits), e.table_name: [{idf: r[idf]} for r in hits[:5]]}))
        success = {"name": f"{name} pages and filters", "steps": steps}
        error = {"name": f"{name} refuses a page over 50", "steps": [
            self.err(name, {"limit": 500}, "limit", "invalid_arguments", write=False)]}
        return [success, error]

    def cases_update(self, plan: OpPlan) -> list[dict]:
        e, name, idf = plan.entity, plan.op.name, plan.id_field
        final = final_states(self.spec, e)
        over = [r for r in self.rows(e) if any(r.get(c) in states for c, states in final.items())]
        rows = [r for r in self.rows(e) if r not in over]   # rows whose workflow is not over take updates
        if not rows:
            return []
        row = rows[1] if len(rows) > 1 else rows[0]
        changes: dict[str, Any] = {}
        for p in [p for p in plan.params if p.role == "value"][:2]:
            changes[p.name] = self.fresh(e, p.field, current=row[p.name])
        key = row[idf]
        success = {"name": f"{name} changes the given fields only", "steps": [self.ok(
            name, {idf: key, **changes}, {**self.out_row(e, {**row, **changes})},
            state=self.row_state(e, key, {**{f.name: row[f.name] for f in e.fields}, **changes}))]}
        shown = self.out_row(e, row)
        same = {p: shown[p] for p in changes if shown.get(p) is not None}
        error = {"name": f"{name} refuses a missing {label(e)} or no change", "steps": [
            self.err(name, {idf: MISSING_ID, **changes}, f"{label(e)} {MISSING_ID} does not exist"),
            self.err(name, {idf: key}, "at least one field")]
            + ([self.err(name, {idf: key, **same}, "nothing to change")] if same else [])}
        if over:  # a row whose workflow is over (a returned checkout cannot be renewed)
            done = over[0]
            state = next(done[c] for c, states in final.items() if done.get(c) in states)
            error["steps"].append(self.err(name, {idf: done[idf], **changes}, f"{label(e)} {done[idf]} is {state}"))
        return [success, error]

    def cases_delete(self, plan: OpPlan) -> list[dict]:
        e, name, idf = plan.entity, plan.op.name, plan.id_field
        rows = self.rows(e)
        refs = self.referenced(e)
        free = [r[idf] for r in rows if r[idf] not in refs]
        cases = []
        if free:
            key = free[-1]
            cases.append({"name": f"{name} removes an unreferenced {label(e)}", "steps": [self.ok(
                name, {idf: key}, {"deleted": True, idf: key},
                state=[self.count_state(e, len(rows) - 1),
                       {"sql": f'SELECT COUNT(*) FROM "{e.table_name}" WHERE "{idf}" = {key}', "rows": [[0]]}])]})
        steps = []
        if refs:
            key, child = min(refs.items())
            steps.append(self.err(name, {idf: key}, f"{label(e)} {key} cannot be deleted"))
            steps.append(self.err(name, {idf: key}, child))
        steps.append(self.err(name, {idf: MISSING_ID}, f"{label(e)} {MISSING_ID} does not exist"))
        cases.append({"name": f"{name} refuses referenced or missing rows", "steps": steps})
        return cases

    def cases_transition(self, plan: OpPlan) -> list[dict]:
        e, name, idf, t = plan.entity, plan.op.name, plan.id_field, plan.op.transition
        rows = self.rows(e)
        cases = []
        ready = [r for r in rows if r[t.field] in t.from_states]
        if ready:
            row = ready[0]
            cases.append({"name": f"{name} moves {t.field} to {t.to}", "steps": [self.ok(
                name, {idf: row[idf]}, {idf: row[idf], t.field: t.to},
                state=self.row_state(e, row[idf], {t.field: t.to}))]})
        else:  # no seed row is in a from-state: walk a row there through the other transitions
            steps = self._reach(e, plan)
            if steps:
                cases.append({"name": f"{name} moves {t.field} to {t.to} after other transitions", "steps": steps})
        steps = []
        blocked = [r for r in rows if r[t.field] is not None and r[t.field] not in t.from_states]
        if blocked:
            row = blocked[0]
            steps.append(self.err(name, {idf: row[idf]}, f"{label(e)} {row[idf]} is {row[t.field]}"))
        steps.append(self.err(name, {idf: MISSING_ID}, f"{label(e)} {MISSING_ID} does not exist"))
        cases.append({"name": f"{name} refuses other states and missing rows", "steps": steps})
        return cases

    def _path(self, e: EntitySpec, field: str, start: Any, goals: list[str]) -> list[OpPlan] | None:
        """The shortest run of transitions on ``field`` from ``start`` to one of ``goals`` (breadth first)."""
        moves = [p for p in self._kinds(e)["transition"] if p.op.transition.field == field]
        frontier, seen = [(start, [])], {start}
        while frontier:
            state, path = frontier.pop(0)
            if state in goals:
                return path
            for p in moves:
                t = p.op.transition
                if state in t.from_states and t.to not in seen:
                    seen.add(t.to)
                    frontier.append((t.to, path + [p]))
        return None

    def _reach(self, e: EntitySpec, plan: OpPlan) -> list[dict]:
        """Steps that bring a seed row (or a new row) into one of ``plan``'s from-states, then run ``plan``."""
        t, idf = plan.op.transition, e.id_field
        steps: list[dict] = []
        prev, key, state = None, None, None
        for row in self.rows(e):
            if row[t.field] is not None and self._path(e, t.field, row[t.field], t.from_states) is not None:
                key, state = row[idf], row[t.field]
                break
        if key is None and self._kinds(e)["create"]:
            prev, key, current = self._create_step(steps, e, self._kinds(e)["create"][0],
                                                   states={t.field: t.from_states[0]})
            state = current.get(t.field)
        path = self._path(e, t.field, state, t.from_states) if key is not None else None
        if path is None:
            return []
        for p in [*path, plan]:
            to = p.op.transition.to
            prev = self._push(steps, self.ok(p.op.name, {idf: f"{prev}.{idf}" if prev else key}, {idf: key, t.field: to},
                                             state=self.row_state(e, key, {t.field: to})))
        return steps

    # -- the dependent chain
    def chains(self) -> list[dict]:
        """A workflow case per entity whose operations allow three or more dependent calls."""
        cases = []
        for e in self.spec.entities:
            steps = self._chain_for(e)
            if len(steps) >= 3:
                cases.append({"name": f"{label(e)} workflow: each call uses the previous call's output", "steps": steps})
        return cases

    def _kinds(self, e: EntitySpec) -> dict[str, list[OpPlan]]:
        plans = [p for p in self.plans if p.entity is e]
        return {k: [p for p in plans if p.op.kind == k] for k in ("create", "get", "list", "update", "transition", "delete")}

    @staticmethod
    def _push(steps: list[dict], step: dict) -> str:
        step["save"] = f"s{len(steps)}"
        steps.append(step)
        return f"${step['save']}"

    def _read_parent(self, steps: list[dict], e: EntitySpec, ref) -> tuple[str, int] | None:
        """A read of a parent row the new row can point at: (reference to its id, its id)."""
        parent = self.spec.entity(ref.field.references)
        prows = self.rows(parent)
        if ref.field.unique:  # one-to-one: a parent nothing points at yet
            taken = {r.get(ref.name) for r in self.rows(e)}
            prows = [r for r in prows if r[parent.id_field] not in taken]
        if not prows:
            return None
        row, pid = prows[0], parent.id_field
        kinds = self._kinds(parent)
        if kinds["get"]:
            p = kinds["get"][0].params[0]
            arg = row[pid] if p.role == "id" else row[p.name]
            saved = self._push(steps, self.ok(kinds["get"][0].op.name, {p.name: arg}, {pid: row[pid]}))
            return f"{saved}.{pid}", row[pid]
        if kinds["list"]:
            # rows come back ordered by id, so the offset picks the wanted parent
            offset = self.rows(parent).index(row)
            saved = self._push(steps, self.ok(kinds["list"][0].op.name, {"limit": 1, "offset": offset},
                                              {parent.table_name: [{pid: row[pid]}]}))
            return f"{saved}.{parent.table_name}.0.{pid}", row[pid]
        return None

    def _create_step(self, steps: list[dict], e: EntitySpec, plan: OpPlan, link=None,
                     states: dict[str, str] | None = None) -> tuple[str, int, dict]:
        """Create a row of ``e``; ``link`` = (field, reference, id) ties it to the previous step;
        ``states`` asks for enum values where the tool takes them."""
        kinds = self._kinds(e)
        overrides: dict[str, Any] = {k: v for k, v in (states or {}).items() if plan.param(k) is not None}
        known: dict[str, Any] = {}
        if link is not None:
            overrides[link[0]], known[link[0]] = link[1], link[2]
        else:
            ref = next((p for p in plan.params if p.field.references), None)
            found = self._read_parent(steps, e, ref) if ref is not None else None
            if found is not None:
                overrides[ref.name], known[ref.name] = found
        for p in plan.params:  # start in a state some transition leaves from, to walk the workflow
            if p.field.type == "enum" and p.name not in overrides:
                starts = [st for tp in kinds["transition"] if tp.op.transition.field == p.name
                          for st in tp.op.transition.from_states]
                if starts:
                    overrides[p.name] = starts[0]
        args = self.create_values(plan, overrides)
        key = self.next_id(e)
        current = {**self.created_row(plan, args), **known}
        shown = {k: v for k, v in args.items() if k not in known}
        saved = self._push(steps, self.ok(plan.op.name, args, {e.id_field: key, **shown},
                                          state=self.row_state(e, key, {f.name: current.get(f.name) for f in e.fields})))
        return saved, key, current

    def _walk(self, steps: list[dict], e: EntitySpec, prev: str | None, key: int, current: dict) -> str | None:
        """Reads and writes on one row, each using the previous call's output; returns the last reference."""
        kinds, idf = self._kinds(e), e.id_field

        def arg_id():
            return f"{prev}.{idf}" if prev else key

        def add_get() -> None:
            nonlocal prev
            if kinds["get"]:
                p = kinds["get"][0].params[0]
                if p.role == "id":
                    arg = arg_id()
                else:
                    arg = f"{prev}.{p.name}" if prev else current[p.name]
                prev = self._push(steps, self.ok(kinds["get"][0].op.name, {p.name: arg}, {idf: key}))

        add_get()
        steps_before_writes = len(steps)
        if kinds["update"]:
            plan = kinds["update"][0]
            workflow = {tp.op.transition.field for tp in kinds["transition"]}
            vp = next((p for p in plan.params if p.role == "value" and not p.field.references
                       and p.name not in workflow), None)
            if vp is not None:
                v = self.fresh(e, vp.field, current=current.get(vp.name))
                current[vp.name] = v
                prev = self._push(steps, self.ok(plan.op.name, {idf: arg_id(), vp.name: v}, {idf: key, vp.name: v},
                                                 state=self.row_state(e, key, {vp.name: v})))
        used: set[str] = set()
        moved = True
        while moved:
            moved = False
            for plan in kinds["transition"]:
                t = plan.op.transition
                if plan.op.name not in used and current.get(t.field) in t.from_states:
                    used.add(plan.op.name)
                    current[t.field] = t.to
                    prev = self._push(steps, self.ok(plan.op.name, {idf: arg_id()}, {idf: key, t.field: t.to},
                                                     state=self.row_state(e, key, {t.field: t.to})))
                    moved = True
                    break
        if len(steps) < 4 and len(steps) > steps_before_writes:
            add_get()  # read back what the writes did
        return prev

    def _delete_step(self, steps: list[dict], e: EntitySpec, prev: str | None, key: int) -> None:
        plan = self._kinds(e)["delete"][0]
        idf = e.id_field
        steps.append(self.ok(plan.op.name, {idf: f"{prev}.{idf}" if prev else key}, {"deleted": True, idf: key},
                             state=[{"sql": f'SELECT COUNT(*) FROM "{e.table_name}" WHERE "{idf}" = {key}',
                                     "rows": [[0]]}]))

    def _chain_for(self, e: EntitySpec) -> list[dict]:
        kinds = self._kinds(e)
        steps: list[dict] = []
        if kinds["create"]:
            prev, key, current = self._create_step(steps, e, kinds["create"][0])
            fresh_row = True
        elif self.rows(e):
            row = self.rows(e)[0]
            prev, key, current, fresh_row = None, row[e.id_field], dict(row), False
        else:
            return []
        prev = self._walk(steps, e, prev, key, current)
        # carry on into a child row that points at this one, when a tool creates such rows
        child = next(((c, p) for c in self.spec.entities if c is not e for p in self._kinds(c)["create"][:1]
                      for prm in p.params if prm.field.references == e.name and not prm.field.unique), None)
        if child is not None and prev is not None:
            c, plan = child
            field = next(prm.name for prm in plan.params if prm.field.references == e.name)
            cprev, ckey, ccurrent = self._create_step(steps, c, plan, link=(field, f"{prev}.{e.id_field}", key))
            cprev = self._walk(steps, c, cprev, ckey, ccurrent)
            if self._kinds(c)["delete"]:
                self._delete_step(steps, c, cprev, ckey)
        elif kinds["delete"] and fresh_row:
            self._delete_step(steps, e, prev, key)
        return steps

    def suite(self) -> dict:
        cases: list[dict] = []
        for plan in self.plans:
            cases += getattr(self, f"cases_{plan.op.kind}")(plan)
        return {"cases": cases + self.chains()}


def generate_tests(spec: ApiSpec, manifest: Manifest | dict | list, seed: Rows, clock: str | None = None) -> dict:
    """The tests.json content for a package made from ``spec``: from the spec, the tool specs (a Manifest,
    its dict, or a list of ToolSpec/dicts) and the seed rows, without reading tools.py."""
    if isinstance(manifest, dict):
        manifest = Manifest.model_validate(manifest)
    if isinstance(manifest, Manifest):
        tools, clock = manifest.tools, clock or manifest.clock
    else:
        tools = [t if isinstance(t, ToolSpec) else ToolSpec.model_validate(t) for t in manifest]
        clock = clock or Manifest.model_fields["clock"].default
    return TestWriter(spec, tools, seed, clock).suite()
