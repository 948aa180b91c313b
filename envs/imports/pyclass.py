"""The ``pyclass`` backend: existing stateful tool classes under the same Environment contract as
SQLite packages (isolated episodes, snapshot and restore, canonical hash, cell-level diff, MCP).

Fidelity to the source is the contract: a sequence of calls on an episode gives the outputs, the
exceptions and the final state the same calls give on the class itself. Each episode holds a
live instance copied from the environment's initial instance (pickle, else deepcopy), so sets,
tuples, objects and private state (a random generator) stay what they are; a call that raises
keeps what it changed, as the class does (``rollback_on_error`` makes rollback an option).

The agent-visible state is a JSON view of the instance's public data attributes (objects by their
attributes): a top-level dict of entities is a table keyed by its keys, a list a table keyed by
index, scalars rows of a ``_scalars`` table. Hashes and diffs read that view.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import pickle
import random
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import fastjsonschema

from envfactory.envs.imports.arguments import ArgumentProblem, SourceArguments
from envfactory.envs.imports.determinism import Determinism, active
from envfactory.envs.imports.source import HOOKS, exec_class_file, import_from_root
from envfactory.envs.imports.tracking import (TrackedDict, canonical_row, hash_tables, row_digest, table_digest,
                                              wrap_tables)
from envfactory.envs.runtime.arguments import argument_problem, json_problem, loads_arguments
from envfactory.envs.runtime.environment import CallRecord, EnvironmentBase, ToolResult
from envfactory.envs.runtime.errors import EnvironmentPackageError
from envfactory.envs.runtime.manifest import Manifest, ToolSpec, read_package_json
from envfactory.envs.runtime.state import RowChange, Snapshot, StateDiff, _freeze

LOAD_HOOKS = ("load_scenario", "_load_scenario")
_NOT_STATE = (random.Random, threading.Thread, type(threading.Lock()), type(threading.RLock()))


# ---------------------------------------------------------------- the JSON view of a state

def to_json(value: Any, _stack: frozenset = frozenset()) -> Any:
    """Any value as plain JSON: models dumped, objects by their public attributes, tuples and sets
    as arrays (sets sorted), a reference back up the tree as ``"<cycle>"``."""
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if id(value) in _stack:
        return "<cycle>"
    inner = _stack | {id(value)}
    if isinstance(value, dict):
        return {_key(k): to_json(v, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v, inner) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_json(v, inner) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, enum.Enum):
        return to_json(value.value, inner)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Path)):
        return str(value)
    if hasattr(value, "model_dump") and not isinstance(value, type):
        try:
            return to_json(value.model_dump(mode="json"), inner)
        except Exception:  # a model holding arbitrary types: dump in python mode, convert here
            return to_json(value.model_dump(), inner)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name), inner) for f in dataclasses.fields(value)}
    if isinstance(value, _NOT_STATE):
        return f"<{type(value).__name__}>"
    attrs = _data_attributes(value)
    if attrs is not None:
        return {k: to_json(v, inner) for k, v in attrs.items()}
    return str(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(to_json(key)) if isinstance(key, tuple) else str(to_json(key))


def _data_attributes(obj: Any) -> dict[str, Any] | None:
    """Public, non-callable attributes of an ordinary object (None for what has none)."""
    if isinstance(obj, type) or callable(obj):
        return None
    try:
        attrs = dict(vars(obj))
    except TypeError:
        slots = [s for c in type(obj).__mro__ for s in getattr(c, "__slots__", ())]
        if not slots:
            return None
        attrs = {s: getattr(obj, s) for s in slots if hasattr(obj, s)}
    return {k: v for k, v in attrs.items() if not k.startswith("_") and not callable(v)}


def state_view(instance: Any) -> dict[str, Any]:
    """The agent-visible state: public data attributes (private ones when there are no public)."""
    attrs = {k: v for k, v in vars(instance).items() if not callable(v) and not isinstance(v, _NOT_STATE)}
    public = {k: v for k, v in attrs.items() if not k.startswith("_")}
    chosen = public or {k: v for k, v in attrs.items() if not k.startswith("__")}
    return {k: to_json(v) for k, v in chosen.items()}


def public_state(instance: Any) -> dict[str, Any]:
    """Kept for callers of the 0.1 API: the JSON view."""
    return state_view(instance)


def canonical(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------- loading a scenario

def load_state(instance: Any, state: dict[str, Any]) -> None:
    """Load a scenario as the class would: its load hook, else attribute by attribute."""
    hook = next((getattr(instance, h) for h in LOAD_HOOKS if callable(getattr(instance, h, None))), None)
    if hook is not None:
        hook(copy.deepcopy(state))
        return
    unknown = sorted(k for k in state if not hasattr(instance, k))
    if unknown:
        known = sorted(k for k, v in vars(instance).items() if not callable(v))
        raise ValueError(f"the scenario names attributes {type(instance).__name__} does not have: {', '.join(unknown)} "
                         f"(its attributes: {', '.join(known) or 'none'}); keys must match attribute names")
    for key, value in state.items():
        setattr(instance, key, _like(getattr(instance, key), copy.deepcopy(value), key))


def _like(current: Any, value: Any, where: str) -> Any:
    """A JSON value shaped like the attribute it replaces (sets and tuples stay sets and tuples)."""
    if isinstance(current, (set, frozenset)) and isinstance(value, list):
        return type(current)(tuple(v) if isinstance(v, list) else v for v in value)
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(current, dict) and isinstance(value, dict):
        return {k: _like(current[k], v, f"{where}.{k}") if k in current else v for k, v in value.items()}
    if _data_attributes(current) and not isinstance(current, (list, dict)) and isinstance(value, dict):
        raise ValueError(f"{where} holds a {type(current).__name__} object, which a JSON scenario cannot rebuild; "
                         "add load_scenario/save_scenario hooks to the class, or import it without a scenario")
    return value


# ---------------------------------------------------------------- state as tables

def state_tables(state: dict[str, Any], volatile: set[str]) -> dict[str, dict[Any, dict[str, Any]]]:
    """A JSON state as tables: a dict attribute is a table keyed by its keys, a list one keyed by index
    (rows that are not objects become ``{"value": ...}``), scalars rows of ``_scalars``."""
    tables: dict[str, dict[Any, dict[str, Any]]] = {}
    for key, value in state.items():
        if key in volatile:
            continue
        if isinstance(value, dict):
            tables[key] = {k: _rowify(v, volatile) for k, v in value.items()}
        elif isinstance(value, list):
            tables[key] = {i: _rowify(v, volatile) for i, v in enumerate(value)}
        else:
            tables.setdefault("_scalars", {})[key] = {"value": value}
    return tables


def _id_columns(*tables: dict[Any, dict[str, Any]]) -> list[str]:
    """The column that repeats each row's key (``permit_id`` in ``{"P-1": {"permit_id": "P-1"}}``).

    Declaring it as the key lets ``StateDiff.cells`` compare inserts by content, as for SQLite.
    """
    rows = [(k, r) for t in tables for k, r in t.items()]
    if not rows:
        return []
    common = set.intersection(*(set(r) for _, r in rows))
    return sorted(c for c in common if all(r[c] == k for k, r in rows))[:1]


def diff_tables(before: dict, after: dict) -> StateDiff:
    changes, keys = [], {}
    for table in sorted(set(before) | set(after)):
        b, a = before.get(table, {}), after.get(table, {})
        keys[table] = _id_columns(b, a)
        for key in sorted(set(b) | set(a), key=repr):
            if key not in b:
                changes.append(RowChange(table=table, key=key, kind="insert", after=a[key]))
            elif key not in a:
                changes.append(RowChange(table=table, key=key, kind="delete", before=b[key]))
            else:
                cols = [c for c in sorted(set(b[key]) | set(a[key])) if _freeze(b[key].get(c)) != _freeze(a[key].get(c))]
                if cols:
                    changes.append(RowChange(table=table, key=key, kind="update", before=b[key], after=a[key], columns=cols))
    return StateDiff(changes=changes, keys=keys)


def _data(d: bytes | Snapshot) -> bytes:
    return d.data if isinstance(d, Snapshot) else d


# ---------------------------------------------------------------- the live view of an episode

_MISSING = object()


def state_attributes(instance: Any) -> dict[str, Any]:
    """The attributes the state view shows: public data attributes (private when none is public)."""
    attrs = {k: v for k, v in vars(instance).items() if not callable(v) and not isinstance(v, _NOT_STATE)}
    public = {k: v for k, v in attrs.items() if not k.startswith("_")}
    return public or {k: v for k, v in attrs.items() if not k.startswith("__")}


def _rowify(value: Any, volatile: set[str]) -> Any:
    return {c: x for c, x in value.items() if c not in volatile} if isinstance(value, dict) else {"value": value}


class LiveView:
    """An instance's JSON view, its tables and hash, brought up to date after each call by converting
    only what the call reached (see ``tracking``)."""

    def __init__(self, instance: Any, volatile: set[str]):
        self.instance, self.volatile = instance, volatile
        self.values: dict[str, Any] = {}            # attribute -> its JSON (dict attributes: json key -> JSON)
        self.rows: dict[str, dict[Any, bytes]] = {}  # table -> key -> canonical row
        self.digests: dict[str, dict[Any, int]] = {}
        self.total = 0
        self.ids: dict[str, int] = {}                # attribute -> id of the object converted
        self.dirty: dict[str, set] = {}              # table -> keys changed since the base
        self.reached: dict[str, set] = {}            # tracked attribute -> raw keys reached since the base
        self.replaced: set[str] = set()              # attributes converted whole since the base
        self._present_tables: set[str] = set()       # tables whose digest is in the total
        wrap_tables(instance)
        for attr, value in state_attributes(instance).items():
            self._set_attribute(attr, value, dirty=False)

    def copy_for(self, instance: Any) -> "LiveView":
        """This view for a faithful copy of its instance (a new episode's): the JSON and digests are
        copied, not converted again."""
        view = object.__new__(LiveView)
        view.instance, view.volatile, view.total = instance, self.volatile, self.total
        view.values = {a: dict(v) if isinstance(v, dict) else v for a, v in self.values.items()}
        view.rows = {t: dict(r) for t, r in self.rows.items()}
        view.digests = {t: dict(d) for t, d in self.digests.items()}
        view.dirty, view.reached, view.replaced = {}, {}, set()
        view._present_tables = set(self._present_tables)
        wrap_tables(instance)
        view.ids = {a: id(v) for a, v in state_attributes(instance).items() if a in self.values}
        return view

    # -- rows
    def _table_of(self, attr: str, value: Any) -> str | None:
        if attr in self.volatile:
            return None
        return attr if isinstance(value, (dict, list)) else "_scalars"

    def _put(self, table: str, key: Any, row: Any, dirty: bool) -> bool:
        """Set (or with _MISSING remove) one row; True when it changed."""
        rows, digests = self.rows.setdefault(table, {}), self.digests.setdefault(table, {})
        if row is not _MISSING and table not in self._present:
            self._present.add(table)
            self.total += table_digest(table)
        old = rows.get(key)
        new = None if row is _MISSING else canonical_row(row)
        if old == new:
            return False
        if old is not None:
            self.total -= digests.pop(key)
            del rows[key]
            if table == "_scalars" and not rows and new is None:
                self._drop_table(table)
        if new is not None:
            rows[key] = new
            digests[key] = row_digest(table, key, new)
            self.total += digests[key]
        if dirty:
            self.dirty.setdefault(table, set()).add(key)
        return True

    @property
    def _present(self) -> set[str]:
        return self._present_tables

    def _drop_table(self, table: str) -> None:
        if table in self._present:
            self._present.discard(table)
            self.total -= table_digest(table)

    def _set_attribute(self, attr: str, value: Any, dirty: bool = True) -> bool:
        """Convert an attribute whole and replace its rows; True when something changed."""
        old = self.values.get(attr, _MISSING)
        new = _MISSING if value is _MISSING else (
            {_key(k): to_json(v) for k, v in dict.items(value)} if isinstance(value, dict) else to_json(value))
        changed = False
        old_table = None if old is _MISSING else self._table_of(attr, old)
        new_table = None if new is _MISSING else self._table_of(attr, new)
        if old_table == "_scalars":
            if new_table != "_scalars":
                changed |= self._put("_scalars", attr, _MISSING, dirty)
        elif old_table is not None:
            old_keys = set(old) if isinstance(old, dict) else set(range(len(old)))
            new_keys = set() if new_table != old_table else (set(new) if isinstance(new, dict) else set(range(len(new))))
            for key in old_keys - new_keys:
                changed |= self._put(old_table, key, _MISSING, dirty)
            if new_table != old_table:
                self._drop_table(old_table)
        if new_table == "_scalars":
            changed |= self._put("_scalars", attr, {"value": new}, dirty)
        elif new_table is not None:
            if new_table not in self._present:
                self._present.add(new_table)
                self.total += table_digest(new_table)
                changed = changed or dirty
            items = new.items() if isinstance(new, dict) else enumerate(new)
            for key, row in items:
                changed |= self._put(new_table, key, _rowify(row, self.volatile), dirty)
        if new is _MISSING:
            self.values.pop(attr, None)
            self.ids.pop(attr, None)
        else:
            self.values[attr] = new
            self.ids[attr] = id(value)
        return changed or (old is _MISSING) != (new is _MISSING)

    def _set_key(self, attr: str, table: dict, key: Any) -> bool:
        jkey = _key(key)
        new = to_json(dict.__getitem__(table, key)) if dict.__contains__(table, key) else _MISSING
        values = self.values[attr]
        if new is _MISSING:
            if jkey not in values:
                return False
            del values[jkey]
        else:
            values[jkey] = new
        if attr in self.volatile:
            return False
        return self._put(attr, jkey, new if new is _MISSING else _rowify(new, self.volatile), True)

    # -- after a call
    def refresh(self) -> bool:
        """Bring the view up to date with the instance; True when the state changed."""
        current = state_attributes(self.instance)
        changed = False
        for attr in [a for a in self.values if a not in current]:
            changed |= self._set_attribute(attr, _MISSING)
            self.replaced.add(attr)
        if any(self.ids.get(a) != id(v) for a, v in current.items()):
            wrap_tables(self.instance)  # a new dict assigned by the call: track it from now on
            current = state_attributes(self.instance)
        for attr, value in current.items():
            if type(value) is TrackedDict and self.ids.get(attr) == id(value) and not value.everything:
                for key in value.touched:
                    changed |= self._set_key(attr, value, key)
                self.reached.setdefault(attr, set()).update(value.touched)
                value.touched.clear()
                continue
            if type(value) is TrackedDict:
                self.reached.setdefault(attr, set()).update(dict.keys(value))
                value.touched.clear()
                value.everything = False
            changed |= self._set_attribute(attr, value)
            if type(value) is not TrackedDict:
                self.replaced.add(attr)
        return changed

    # -- reading
    def state_hash(self) -> str:
        return f"{self.total % (1 << 256):064x}"

    def state_bytes(self) -> bytes:
        return canonical(self.values)

    def diff_from(self, base_rows: dict[str, dict[Any, bytes]]) -> StateDiff:
        """The changes since the base, from the rows marked dirty (same result as a full diff)."""
        changes, keys = [], {}
        for table in sorted(self.dirty):
            before_rows, after_rows = base_rows.get(table, {}), self.rows.get(table, {})
            b, a = {}, {}
            for key in self.dirty[table]:
                if before_rows.get(key) != after_rows.get(key):
                    if key in before_rows:
                        b[key] = json.loads(before_rows[key])
                    if key in after_rows:
                        a[key] = json.loads(after_rows[key])
            if b or a:
                part = diff_tables({table: b}, {table: a})
                changes += part.changes
                keys.update(part.keys)
        return StateDiff(changes=changes, keys=keys)


# ---------------------------------------------------------------- copies of live instances

class Copier:
    """Copies of an instance that keep everything it holds: pickle when it round-trips, else
    deepcopy. A frozen copy is a token that can be thawed any number of times."""

    def __init__(self, instance: Any, allow_pickle: bool = True):
        try:
            if not allow_pickle:
                raise TypeError("pickle finds classes by module name")
            blob = pickle.dumps(instance, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(blob)
            self.mode = "pickle"
        except Exception:
            copy.deepcopy(instance)  # raises when the instance cannot be copied at all
            self.mode = "deepcopy"

    def freeze(self, instance: Any) -> Any:
        if self.mode == "pickle":
            return pickle.dumps(instance, protocol=pickle.HIGHEST_PROTOCOL)
        return copy.deepcopy(instance)

    def thaw(self, token: Any) -> Any:
        return pickle.loads(token) if self.mode == "pickle" else copy.deepcopy(token)


# ---------------------------------------------------------------- tools

class PyClassTool:
    __slots__ = ("spec", "name", "read_only", "fn", "validate", "validate_output", "arguments", "function")

    def __init__(self, spec: ToolSpec, function: Callable | None, arguments: SourceArguments):
        self.spec, self.name, self.read_only = spec, spec.name, spec.read_only
        self.fn = None  # no package-level ``fn(ctx, ...)``: a method of each episode's instance, or an MCP wrapper
        self.function = function  # the module-level wrapper (MCP server files), else None
        self.validate = fastjsonschema.compile(spec.input_schema, use_default=False)
        self.validate_output = fastjsonschema.compile(spec.output_schema, use_default=False)
        self.arguments = arguments


def _shares_objects(root: Any, limit: int = 2_000_000) -> bool:
    """Does any mutable object appear twice in the graph under ``root`` (two rows holding one list)?
    Undoing a reset row by row copies rows one by one, which would split such objects."""
    seen: set[int] = set()
    stack, count = [root], 0
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(node, (str, bytes, int, float, bool, type(None), enum.Enum, dt.date, dt.time)):
            continue
        if not isinstance(node, tuple):
            if id(node) in seen:
                return True
            seen.add(id(node))
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend(node)
        elif isinstance(node, _NOT_STATE) or isinstance(node, type) or callable(node):
            continue
        elif hasattr(node, "__dict__"):
            stack.extend(vars(node).values())
    return False


class PyClassEnvironment(EnvironmentBase):
    def __init__(self, package_dir: Path, manifest: Manifest, cls: type, initial: dict[str, Any] | None,
                 module: Any = None):
        self.package_dir, self.manifest, self.cls, self.module = package_dir, manifest, cls, module
        self.settings = manifest.pyclass
        self.instance_global = self.settings.instance_global
        if self.instance_global and module is None:
            raise EnvironmentPackageError(str(package_dir), "instance_global needs the source module")
        self.tools = {t.name: self._tool(t) for t in manifest.tools}
        self.volatile = {c for cols in manifest.volatile_columns.values() for c in cols} | set(manifest.volatile_columns)
        self.seed = f"pyclass:{manifest.class_name}"  # not the name: the importer's probe must see the same chances
        self.clock = dt.datetime.fromisoformat(manifest.clock.replace("Z", "+00:00"))
        if self.clock.tzinfo is None:
            self.clock = self.clock.replace(tzinfo=dt.timezone.utc)
        self.call_lock = threading.RLock()  # MCP wrappers read one module global: one call at a time
        det = self.determinism()
        with active(det):
            instance = cls()
            if self.settings.initial == "scenario" and initial is not None:
                load_state(instance, initial)
        # Modules imported from a package root live under their own names in sys.modules, which another
        # package with a module of the same name may take over: copy those instances without pickle.
        self.copier = Copier(instance, allow_pickle=not self.settings.import_root)
        self.base = self.copier.freeze(instance)
        # A pristine copy no episode ever holds: resets copy back only the rows an episode reached.
        self.base_live = self.copier.thaw(self.base)
        self.base_view = LiveView(self.base_live, self.volatile)
        self.undo_ok = not _shares_objects(self.base_live)
        self.base_rows = self.base_view.rows
        self.initial_dict = self.base_view.values
        self.initial_state = self.base_view.state_bytes()
        self.tables = {t: None for t in state_tables(self.initial_dict, self.volatile)}
        self.primary_keys = {t: "key" for t in self.tables}
        self.initial_hash = self.base_view.state_hash()

    def _tool(self, spec: ToolSpec) -> PyClassTool:
        if self.instance_global:
            fn = getattr(self.module, spec.name, None)
            return PyClassTool(spec, fn, SourceArguments(spec.name, fn, bound=True))
        raw = next((c.__dict__[spec.name] for c in self.cls.__mro__ if spec.name in c.__dict__), None)
        static = isinstance(raw, staticmethod)
        fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
        return PyClassTool(spec, None, SourceArguments(spec.name, fn, bound=static))

    def determinism(self) -> Determinism:
        return Determinism(self.seed, self.clock)

    def episode(self, episode_id: str | None = None, state: bytes | Snapshot | None = None,
                check_outputs: bool = False) -> "PyClassEpisode":
        return PyClassEpisode(self, episode_id, state, check_outputs)

    def instance_from_view(self, data: bytes) -> Any:
        """An instance holding a JSON state (restore from bytes alone: lossy where JSON is)."""
        try:
            state = json.loads(data)
        except (ValueError, TypeError, RecursionError) as exc:
            raise ValueError(f"not a snapshot of {self.name}: the state is not JSON ({str(exc)[:120]})") from None
        if not isinstance(state, dict):
            raise ValueError(f"not a snapshot of {self.name}: the state must be a JSON object of attributes")
        with active(self.determinism()):
            instance = self.cls()
            try:
                load_state(instance, state)
            except Exception as exc:
                raise ValueError(f"not a snapshot of {self.name}: {type(exc).__name__}: {exc}") from None
        return instance

    def hash_of(self, data: bytes | Snapshot) -> str:
        if isinstance(data, Snapshot) and data.hash:
            return data.hash
        return hash_tables(state_tables(json.loads(_data(data)), self.volatile))

    def diff_states(self, before: bytes | Snapshot, after: bytes | Snapshot) -> StateDiff:
        load = lambda d: state_tables(json.loads(_data(d)), self.volatile)
        return diff_tables(load(before), load(after))


class PyClassEpisode:
    def __init__(self, env: PyClassEnvironment, episode_id: str | None, state, check_outputs: bool):
        self.env, self.id, self.check_outputs = env, episode_id or uuid.uuid4().hex, check_outputs
        self.calls: list[CallRecord] = []
        self.warnings: list[str] = []  # arguments passed as given although they contradict an annotation
        self.det = env.determinism()
        self._lock = threading.RLock()
        self.instance = self.view = None
        self._undoable = False
        self.reset(state)

    # -- state
    def reset(self, state: bytes | Snapshot | None = None) -> None:
        with self._lock:
            if state is None:
                if self.view is not None and self._undoable and self.env.undo_ok:
                    self._undo_to_base()
                else:
                    self.instance = self.env.copier.thaw(self.env.base)
                    self.view = self.env.base_view.copy_for(self.instance)
                self._undoable = True  # the view knows every row reached since this base
                self._base, self._base_rows = self.env.initial_state, self.env.base_rows
                self.det.reseed()
            else:
                self._restore(state)
                self._undoable = False
                self._base = _data(state)
                self._base_rows = {t: dict(r) for t, r in self.view.rows.items()}
                self.view.dirty.clear()
            self._origin = (None if state is None else state, self.det.state())
            self._history: list[tuple[int, PyClassTool, dict]] = []  # calls that reached the class, for replays
            self.calls = []

    def _install(self, instance: Any) -> None:
        self.instance = instance
        self.view = LiveView(instance, self.env.volatile)

    def _undo_to_base(self) -> None:
        """Back to the initial state by copying back only what this episode reached (exact: the base
        shares no objects between rows, checked when the environment loaded)."""
        base, inst, view = self.env.base_live, self.instance, self.view
        attrs = vars(inst)
        for attr in [a for a in attrs if a not in vars(base)]:
            del attrs[attr]
        for attr, original in vars(base).items():
            current = attrs.get(attr, _MISSING)
            if (type(current) is TrackedDict and attr not in view.replaced and view.ids.get(attr) == id(current)
                    and isinstance(original, dict)):
                keys = view.reached.get(attr, set())
                for key in keys:
                    if dict.__contains__(original, key):
                        dict.__setitem__(current, key, copy.deepcopy(dict.__getitem__(original, key)))
                    elif dict.__contains__(current, key):
                        dict.__delitem__(current, key)
                current.touched = set(keys)
                current.everything = False
            else:
                attrs[attr] = copy.deepcopy(original)
        view.refresh()
        view.dirty.clear()
        view.reached.clear()
        view.replaced.clear()

    def _restore(self, state: bytes | Snapshot) -> None:
        """Swap in the instance a snapshot holds; on any problem the current one stays."""
        if isinstance(state, Snapshot) and "pyclass_instance" in state.meta:
            self._install(self.env.copier.thaw(state.meta["pyclass_instance"]))
            self.det.set_state(state.meta["pyclass_chance"])
        else:
            self._install(self.env.instance_from_view(_data(state)))

    def _state_bytes(self) -> bytes:
        return self.view.state_bytes()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._state_bytes(), None, hash=self.view.state_hash(),
                            meta={"pyclass_instance": self.env.copier.freeze(self.instance),
                                  "pyclass_chance": self.det.state()})

    def restore(self, snap: Snapshot | bytes) -> None:
        with self._lock:
            self._restore(snap)
            self._undoable = False  # a new instance: what it holds beyond the base is not in its view
            self.view.dirty = {t: set(r) | set(self._base_rows.get(t, {})) for t, r in self.view.rows.items()}
            for table, rows in self._base_rows.items():
                self.view.dirty.setdefault(table, set()).update(rows)
            self._origin = (snap, self.det.state())
            self._history = []

    def state_hash(self) -> str:
        with self._lock:
            return self.view.state_hash()

    def diff(self, against: bytes | Snapshot | None = None) -> StateDiff:
        with self._lock:
            if against is None:
                return self.view.diff_from(self._base_rows)
            return self.env.diff_states(against, self._state_bytes())

    def state_json(self) -> dict[str, Any]:
        """The current state as JSON data (path checks and grounding read it; do not change it)."""
        with self._lock:
            return self.view.values

    @property
    def base_state(self) -> bytes:
        return self._base

    # -- calls
    def call(self, name: str, arguments: dict[str, Any] | str | None = None) -> ToolResult:
        tool = self.env.tools.get(name)
        if isinstance(arguments, str):
            try:
                arguments = loads_arguments(arguments) if arguments.strip() else {}
            except ValueError as exc:
                return self._fail(name, {}, "invalid_arguments", f"invalid arguments for {name}: not valid JSON ({json_problem(exc)})")
        arguments = {} if arguments is None else arguments
        if tool is None:
            return self._fail(name, arguments, "unknown_tool",
                              f"unknown tool {name!r}; available tools: {', '.join(sorted(self.env.tools))}")
        if not isinstance(arguments, dict):
            return self._fail(name, {}, "invalid_arguments",
                              f"invalid arguments for {name}: expected a JSON object, got {type(arguments).__name__}")
        problem = argument_problem(arguments)
        if problem:
            return self._fail(name, arguments, "invalid_arguments", f"invalid arguments for {name}: {problem}")
        with self._lock:
            return self._run(tool, arguments)

    def _invoke(self, tool: PyClassTool, kwargs: dict[str, Any], clock: int) -> Any:
        self.det.calls = clock
        with active(self.det):
            if tool.function is None:
                return getattr(self.instance, tool.name)(**kwargs)
            module, name = self.env.module, self.env.instance_global
            with self.env.call_lock:
                previous = getattr(module, name)
                setattr(module, name, self.instance)
                try:
                    return tool.function(**kwargs)
                finally:
                    setattr(module, name, previous)

    def _replay(self) -> None:
        """Rebuild the state from the last reset or restore by making the recorded calls again (the
        same calls on the same seeded chances give the same state): undoing a call costs nothing
        until one has to be undone."""
        origin, chance = self._origin
        if origin is None:
            self._install(self.env.copier.thaw(self.env.base))
        else:
            self._restore(origin)
        self.det.set_state(chance)
        self._undoable = False
        for clock, tool, arguments in self._history:
            try:
                self._invoke(tool, tool.arguments.prepare(arguments)[0], clock)
            except Exception:
                pass
        self.view.dirty = {t: set(r) | set(self._base_rows.get(t, {})) for t, r in self.view.rows.items()}
        for table, rows in self._base_rows.items():
            self.view.dirty.setdefault(table, set()).update(rows)

    def _run(self, tool: PyClassTool, arguments: dict[str, Any]) -> ToolResult:
        try:
            kwargs, warnings = tool.arguments.prepare(arguments)
        except ArgumentProblem as exc:
            return self._fail(tool.name, arguments, "invalid_arguments", f"invalid arguments for {tool.name}: {exc}")
        self.warnings += warnings
        clock = len(self.calls)
        try:
            output = to_json(self._invoke(tool, kwargs, clock))
            error = None
        except MemoryError:
            raise
        except Exception as exc:  # these classes raise plain exceptions for domain errors
            output, error = None, str(exc) or type(exc).__name__
        wrote = self.view.refresh()
        undo = wrote and (tool.read_only and error is None or error is not None and self.env.settings.rollback_on_error)
        if undo:
            self._replay()  # without this call: its changes are undone
        else:
            self._history.append((clock, tool, copy.deepcopy(arguments)))
        if error is not None:
            self.calls.append(CallRecord(tool.name, arguments, False, "domain", wrote and not undo, warnings))
            return ToolResult(tool.name, arguments, False, None, error, "domain")
        if undo:
            return self._fail(tool.name, arguments, "read_only_violation",
                              f"{tool.name} is declared read-only but changed the state; its changes were undone")
        if self.check_outputs:
            try:
                tool.validate_output(output)
            except fastjsonschema.JsonSchemaValueException as exc:
                return self._fail(tool.name, arguments, "internal",
                                  f"{tool.name} returned output that violates its output_schema: {exc.message}")
        self.calls.append(CallRecord(tool.name, arguments, True, None, wrote, warnings))
        return ToolResult(tool.name, arguments, True, output)

    def _fail(self, name, arguments, kind, message) -> ToolResult:
        self.calls.append(CallRecord(name, arguments, False, kind, False))
        return ToolResult(name, arguments, False, None, message, kind)

    def close(self) -> None:
        self.instance = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- loading a package

def load_source(package_dir: Path, manifest: Manifest) -> tuple[Any, type]:
    """The module and class a pyclass package names (errors name the package)."""
    settings = manifest.pyclass
    try:
        if settings.import_root and settings.module:
            module = import_from_root(package_dir / settings.import_root, settings.module)
        else:
            module = exec_class_file(package_dir / manifest.tools_module)
    except MemoryError:
        raise
    except (Exception, SystemExit) as exc:
        raise EnvironmentPackageError(str(package_dir), f"{manifest.tools_module} failed to import: "
                                                        f"{type(exc).__name__}: {exc}") from exc
    cls = getattr(module, manifest.class_name, None)
    if not isinstance(cls, type):
        raise EnvironmentPackageError(str(package_dir), f"{manifest.tools_module} defines no class {manifest.class_name!r}")
    return module, cls


def load_class(path: Path, class_name: str) -> type:
    try:
        module = exec_class_file(path)
    except MemoryError:
        raise
    except Exception as exc:
        raise EnvironmentPackageError(str(path.parent), f"{path.name} failed to import: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise EnvironmentPackageError(str(path.parent), f"{path.name} defines no class {class_name!r}")
    return cls


def load_pyclass_environment(package_dir: Path, manifest: Manifest) -> PyClassEnvironment:
    module, cls = load_source(package_dir, manifest)
    owner = module if manifest.pyclass.instance_global else cls
    missing = [t.name for t in manifest.tools if not callable(getattr(owner, t.name, None))]
    if missing:
        where = f"module {manifest.tools_module}" if manifest.pyclass.instance_global else f"class {manifest.class_name}"
        raise EnvironmentPackageError(str(package_dir), f"{where} has no function for tools {missing}")
    if manifest.pyclass.instance_global and not isinstance(getattr(module, manifest.pyclass.instance_global, None), cls):
        raise EnvironmentPackageError(str(package_dir), f"{manifest.tools_module} has no global "
                                                        f"{manifest.pyclass.instance_global!r} holding a {cls.__name__}")
    initial = read_package_json(package_dir, manifest.seed, dict, "the initial state as a JSON object")
    try:
        return PyClassEnvironment(package_dir, manifest, cls, initial, module)
    except fastjsonschema.JsonSchemaDefinitionException as exc:  # e.g. a $ref to nowhere
        raise EnvironmentPackageError(str(package_dir), f"a tool's schemas cannot be compiled: {exc}") from None
    except EnvironmentPackageError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise EnvironmentPackageError(str(package_dir), f"{cls.__name__} cannot build its initial state: "
                                                        f"{type(exc).__name__}: {exc}") from exc
