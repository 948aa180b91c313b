"""The ``pyclass`` backend: existing stateful tool classes (public methods are tools, public
attributes or ``load_scenario``/``save_scenario`` hooks hold the state) under the same
Environment contract as SQLite packages: isolated episodes, transactional calls, snapshot and
restore, canonical hash, cell-level diff, MCP serving.

State maps to tables for diffs: a top-level dict of entities is a table keyed by its keys, a list
a table keyed by index, and scalars rows of a ``_scalars`` table.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import itertools
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import fastjsonschema

from .errors import EnvironmentPackageError
from .manifest import Manifest, ToolSpec, read_package_json
from .runtime import CallRecord, EnvironmentBase, ToolResult, _argument_error_message
from .state import RowChange, Snapshot, StateDiff, _freeze

_counter = itertools.count()
READ_PREFIXES = ("get", "list", "search", "find", "view", "check", "show", "describe", "count", "lookup", "read", "query")


def to_json(value: Any) -> Any:
    """Any return value as plain JSON: models dumped, tuples and sets as arrays (never joined text)."""
    if hasattr(value, "model_dump"):
        return to_json(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_json(v) for v in value), key=repr)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def public_state(instance: Any) -> dict[str, Any]:
    if callable(getattr(instance, "save_scenario", None)):
        return to_json(instance.save_scenario())
    return to_json({k: v for k, v in vars(instance).items() if not k.startswith("_") and not callable(v)})


def load_state(instance: Any, state: dict[str, Any]) -> None:
    state = copy.deepcopy(state)
    if callable(getattr(instance, "load_scenario", None)):
        instance.load_scenario(state)
    elif callable(getattr(instance, "_load_scenario", None)):
        instance._load_scenario(state)
    else:
        for k, v in state.items():
            setattr(instance, k, v)


def canonical(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def state_tables(state: dict[str, Any], volatile: set[str]) -> dict[str, dict[Any, dict[str, Any]]]:
    tables: dict[str, dict[Any, dict[str, Any]]] = {}
    for key, value in state.items():
        if key in volatile:
            continue
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            tables[key] = {k: {c: x for c, x in v.items() if c not in volatile} for k, v in value.items()}
        elif isinstance(value, dict):
            tables[key] = {k: {"value": v} for k, v in value.items()}
        elif isinstance(value, list):
            tables[key] = {i: (v if isinstance(v, dict) else {"value": v}) for i, v in enumerate(value)}
        else:
            tables.setdefault("_scalars", {})[key] = {"value": value}
    return tables


def diff_tables(before: dict, after: dict) -> StateDiff:
    changes = []
    for table in sorted(set(before) | set(after)):
        b, a = before.get(table, {}), after.get(table, {})
        for key in sorted(set(b) | set(a), key=repr):
            if key not in b:
                changes.append(RowChange(table=table, key=key, kind="insert", after=a[key]))
            elif key not in a:
                changes.append(RowChange(table=table, key=key, kind="delete", before=b[key]))
            else:
                cols = [c for c in sorted(set(b[key]) | set(a[key])) if _freeze(b[key].get(c)) != _freeze(a[key].get(c))]
                if cols:
                    changes.append(RowChange(table=table, key=key, kind="update", before=b[key], after=a[key], columns=cols))
    return StateDiff(changes=changes, keys={t: ["key"] for t in set(before) | set(after)})


class PyClassTool:
    __slots__ = ("spec", "name", "read_only", "fn", "validate")

    def __init__(self, spec: ToolSpec):
        self.spec, self.name, self.read_only = spec, spec.name, spec.read_only
        self.fn = None
        self.validate = fastjsonschema.compile(spec.input_schema, use_default=False)


class PyClassEnvironment(EnvironmentBase):
    def __init__(self, package_dir: Path, manifest: Manifest, cls: type, initial: dict[str, Any]):
        self.package_dir, self.manifest, self.cls = package_dir, manifest, cls
        self.tools = {t.name: PyClassTool(t) for t in manifest.tools}
        self.volatile = {c for cols in manifest.volatile_columns.values() for c in cols} | set(manifest.volatile_columns)
        probe = cls()
        load_state(probe, initial)
        self.initial_dict = public_state(probe)
        self.initial_state = canonical(self.initial_dict)
        self.tables = {t: None for t in state_tables(self.initial_dict, self.volatile)}
        self.primary_keys = {t: "key" for t in self.tables}
        self.initial_hash = self.hash_of(self.initial_state)

    def episode(self, episode_id: str | None = None, state: bytes | Snapshot | None = None,
                check_outputs: bool = False) -> "PyClassEpisode":
        return PyClassEpisode(self, episode_id, state, check_outputs)

    def hash_of(self, data: bytes | Snapshot) -> str:
        state = json.loads(data.data if isinstance(data, Snapshot) else data)
        tables = state_tables(state, self.volatile)
        return hashlib.sha256(canonical({t: {repr(k): v for k, v in rows.items()} for t, rows in tables.items()})).hexdigest()

    def diff_states(self, before: bytes | Snapshot, after: bytes | Snapshot) -> StateDiff:
        load = lambda d: state_tables(json.loads(d.data if isinstance(d, Snapshot) else d), self.volatile)
        return diff_tables(load(before), load(after))


class PyClassEpisode:
    def __init__(self, env: PyClassEnvironment, episode_id: str | None, state, check_outputs: bool):
        self.env, self.id, self.check_outputs = env, episode_id or uuid.uuid4().hex, check_outputs
        self.calls: list[CallRecord] = []
        self._lock = threading.RLock()
        self.reset(state)

    def _load(self, data: bytes) -> None:
        self.instance = self.env.cls()
        load_state(self.instance, json.loads(data))

    def reset(self, state: bytes | Snapshot | None = None) -> None:
        with self._lock:
            data = self.env.initial_state if state is None else (state.data if isinstance(state, Snapshot) else state)
            self._base = data
            self._load(data)
            self.calls = []

    def _state_bytes(self) -> bytes:
        return canonical(public_state(self.instance))

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._state_bytes(), None)

    def restore(self, snap: Snapshot) -> None:
        with self._lock:
            self._load(snap.data)

    def state_hash(self) -> str:
        return self.env.hash_of(self._state_bytes())

    def diff(self, against: bytes | Snapshot | None = None) -> StateDiff:
        return self.env.diff_states(self._base if against is None else against, self._state_bytes())

    @property
    def base_state(self) -> bytes:
        return self._base

    def call(self, name: str, arguments: dict[str, Any] | str | None = None) -> ToolResult:
        tool = self.env.tools.get(name)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                return self._fail(name, {}, "invalid_arguments", f"invalid arguments for {name}: not valid JSON ({exc.msg})")
        arguments = arguments or {}
        if tool is None:
            return self._fail(name, arguments, "unknown_tool",
                              f"unknown tool {name!r}; available tools: {', '.join(sorted(self.env.tools))}")
        try:
            tool.validate(arguments)
        except fastjsonschema.JsonSchemaValueException as exc:
            return self._fail(name, arguments, "invalid_arguments", _argument_error_message(name, exc))
        with self._lock:
            before = self._state_bytes()
            try:
                output = to_json(getattr(self.instance, name)(**arguments))
            except MemoryError:
                raise
            except Exception as exc:  # these classes raise plain exceptions for domain errors
                self._load(before)
                return self._fail(name, arguments, "domain", str(exc) or type(exc).__name__)
            after = self._state_bytes()
            wrote = after != before
            if wrote and tool.read_only:
                self._load(before)
                return self._fail(name, arguments, "read_only_violation",
                                  f"{name} is declared read-only but changed the state; its changes were undone")
        self.calls.append(CallRecord(name, arguments, True, None, wrote))
        return ToolResult(name, arguments, True, output)

    def _fail(self, name, arguments, kind, message) -> ToolResult:
        self.calls.append(CallRecord(name, arguments if isinstance(arguments, dict) else {}, False, kind, False))
        return ToolResult(name, arguments if isinstance(arguments, dict) else {}, False, None, message, kind)

    def close(self) -> None:
        self.instance = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_class(path: Path, class_name: str) -> type:
    spec = importlib.util.spec_from_file_location(f"envfactory_pyclass_{next(_counter)}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except MemoryError:
        raise
    except Exception as exc:
        raise EnvironmentPackageError(str(path.parent), f"{path.name} failed to import: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise EnvironmentPackageError(str(path.parent), f"{path.name} defines no class {class_name!r}")
    return cls


def load_pyclass_environment(package_dir: Path, manifest: Manifest) -> PyClassEnvironment:
    cls = load_class(package_dir / manifest.tools_module, manifest.class_name)
    missing = [t.name for t in manifest.tools if not callable(getattr(cls, t.name, None))]
    if missing:
        raise EnvironmentPackageError(str(package_dir), f"class {manifest.class_name} has no method for tools {missing}")
    initial = read_package_json(package_dir, manifest.seed, dict, "the initial state as a JSON object")
    return PyClassEnvironment(package_dir, manifest, cls, initial)
