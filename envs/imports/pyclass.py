"""The ``pyclass`` backend: existing stateful tool classes (public methods are tools, public
attributes or ``load_scenario``/``save_scenario`` hooks hold the state) under the same
Environment contract as SQLite packages: isolated episodes, transactional calls, snapshot and
restore, canonical hash, cell-level diff, MCP serving.

State maps to tables for diffs: a top-level dict of entities is a table keyed by its keys, a list
a table keyed by index, and scalars rows of a ``_scalars`` table.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import datetime as dt
import enum
import hashlib
import inspect
import itertools
import json
import sys
import threading
import types
import typing
import uuid
from pathlib import Path
from typing import Any

import fastjsonschema
import pydantic

from envfactory.envs.runtime.arguments import argument_problem, json_problem, loads_arguments
from envfactory.envs.runtime.pyparse import parse_python
from envfactory.envs.runtime.errors import EnvironmentPackageError
from envfactory.envs.runtime.manifest import Manifest, ToolSpec, read_package_json
from envfactory.envs.runtime.environment import CallRecord, EnvironmentBase, ToolResult, _argument_error_message
from envfactory.envs.runtime.state import RowChange, Snapshot, StateDiff, _freeze

_counter = itertools.count()
READ_PREFIXES = ("get", "list", "search", "find", "view", "check", "show", "describe", "count", "lookup", "read", "query")
LOAD_HOOKS = ("load_scenario", "_load_scenario")


def to_json(value: Any) -> Any:
    """Any return value as plain JSON: models dumped, tuples and sets as arrays (never joined text)."""
    if hasattr(value, "model_dump") and not isinstance(value, type):
        try:
            return to_json(value.model_dump(mode="json"))
        except Exception:  # a model holding arbitrary types: dump in python mode, convert here
            return to_json(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_json(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)  # NaN and infinities are not JSON
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def public_state(instance: Any) -> dict[str, Any]:
    if callable(getattr(instance, "save_scenario", None)):
        return to_json(instance.save_scenario())
    return to_json({k: v for k, v in vars(instance).items() if not k.startswith("_") and not callable(v)})


def load_state(instance: Any, state: dict[str, Any]) -> None:
    state = copy.deepcopy(state)
    hook = next((getattr(instance, h) for h in LOAD_HOOKS if callable(getattr(instance, h, None))), None)
    if hook is not None:
        hook(state)
    else:
        for k, v in state.items():
            setattr(instance, k, v)


def canonical(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _starts_a_server(node: ast.stmt) -> bool:
    """A top-level ``mcp.run()`` (the paper's files end with one): it would block the import."""
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "run")


def exec_class_file(path: Path, module_name: str | None = None) -> types.ModuleType:
    """Execute a class file as a module, minus any top-level server start-up.

    The module is registered in ``sys.modules`` so pydantic and ``typing.get_type_hints`` can
    resolve postponed annotations. Raises whatever the file raises (SyntaxError included).
    """
    module_name = module_name or f"envfactory_pyclass_{next(_counter)}"
    tree = parse_python(path.read_text(encoding="utf-8"), filename=str(path))
    tree.body = [node for node in tree.body if not _starts_a_server(node)]
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    try:
        exec(compile(tree, str(path), "exec"), module.__dict__)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


# ---------------------------------------------------------------- state as tables

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


# ---------------------------------------------------------------- environment and episodes

def method_parameters(cls: type, name: str) -> list[inspect.Parameter]:
    """The parameters a caller passes (no ``self``/``cls``, no ``*args``/``**kwargs``)."""
    bound = isinstance(inspect.getattr_static(cls, name), (staticmethod, classmethod))
    params = list(inspect.signature(getattr(cls, name)).parameters.values())[0 if bound else 1:]
    return [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def arguments_model(cls: type, name: str) -> type[pydantic.BaseModel]:
    """A pydantic model of a method's arguments from its signature and type hints."""
    try:
        hints = typing.get_type_hints(getattr(cls, name))
    except Exception:  # unresolvable annotations: treat those parameters as untyped
        hints = {}
    fields = {p.name: (hints.get(p.name, Any), ... if p.default is p.empty else p.default)
              for p in method_parameters(cls, name)}
    return pydantic.create_model(f"{name}_arguments", __config__=pydantic.ConfigDict(arbitrary_types_allowed=True),
                                 **fields)


class PyClassTool:
    __slots__ = ("spec", "name", "read_only", "fn", "validate", "validate_output", "arguments")

    def __init__(self, spec: ToolSpec, cls: type):
        self.spec, self.name, self.read_only = spec, spec.name, spec.read_only
        self.fn = None  # no module-level function: the tool is a method of each episode's instance
        self.validate = fastjsonschema.compile(spec.input_schema, use_default=False)
        self.validate_output = fastjsonschema.compile(spec.output_schema, use_default=False)
        # Coerces JSON arguments to the annotated types (enums, dates, models) the method expects.
        try:
            self.arguments = arguments_model(cls, spec.name)
        except Exception:  # annotations pydantic cannot model: pass the JSON values as they are
            self.arguments = None

    def coerce(self, arguments: dict[str, Any]) -> dict[str, Any]:
        arguments = copy.deepcopy(arguments)  # the instance must not keep the caller's objects
        if self.arguments is None:
            return arguments
        model = self.arguments.model_validate(arguments)
        return {k: getattr(model, k) for k in arguments}


class PyClassEnvironment(EnvironmentBase):
    def __init__(self, package_dir: Path, manifest: Manifest, cls: type, initial: dict[str, Any]):
        self.package_dir, self.manifest, self.cls = package_dir, manifest, cls
        self.tools = {t.name: PyClassTool(t, cls) for t in manifest.tools}
        self.volatile = {c for cols in manifest.volatile_columns.values() for c in cols} | set(manifest.volatile_columns)
        self.initial_dict = _round_trip(cls, initial, package_dir)
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


def _not_plain_json(value: Any, where: str, rich: bool) -> str | None:
    """Where the state holds something its reload would not give back, and what it is.

    ``rich`` (classes with ``save_scenario``): models, dataclasses, enums, dates, tuples and sets
    are fine, the class's own load hook parses them back. Plain attributes must be plain JSON.
    """
    if isinstance(value, (str, int, float, bool)) or value is None:
        return None
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _not_plain_json(v, f"{where}.{k}", rich))), None)
    if isinstance(value, list) or (rich and isinstance(value, (tuple, set, frozenset))):
        return next((p for i, v in enumerate(value) if (p := _not_plain_json(v, f"{where}[{i}]", rich))), None)
    if rich and hasattr(value, "model_dump") and not isinstance(value, type):
        return None
    if rich and (isinstance(value, (enum.Enum, dt.date, dt.time))
                 or dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return None
    return f"{where} holds a {type(value).__name__}"


def _round_trip(cls: type, initial: dict[str, Any], package_dir: Path) -> dict[str, Any]:
    """Load the initial state, read it back, and check a second load gives the same state.

    Reset and restore rely on this; a class whose state does not survive save and load (objects
    that are not JSON, load hooks that ignore attributes) is refused, naming what differs.
    """
    def raw_state(instance: Any) -> Any:
        if saves:
            return instance.save_scenario()
        return {k: v for k, v in vars(instance).items() if not k.startswith("_") and not callable(v)}

    try:
        probe = cls()
        saves = callable(getattr(probe, "save_scenario", None))
        # the constructed instance shows what methods store; the loaded one what the hook makes
        problem = _not_plain_json(raw_state(probe), "state", rich=saves)
        load_state(probe, initial)
        raw = raw_state(probe)
        problem = problem or _not_plain_json(raw, "state", rich=saves)
        first = to_json(raw)
        again = cls()
        load_state(again, first)
        second = public_state(again)
    except MemoryError:
        raise
    except Exception as exc:
        raise EnvironmentPackageError(str(package_dir), f"{cls.__name__} cannot load its initial state: "
                                                        f"{type(exc).__name__}: {exc}") from exc
    if problem:
        raise EnvironmentPackageError(str(package_dir), f"the state of {cls.__name__} is not JSON data: {problem}; "
                                      "public attributes must be dicts, lists, strings, numbers, booleans or null "
                                      "(or add save_scenario/load_scenario hooks that convert them)")
    if second != first:
        keys = sorted(k for k in set(first) | set(second) if first.get(k) != second.get(k))
        raise EnvironmentPackageError(str(package_dir), f"the state of {cls.__name__} does not survive a save and "
                                      f"reload (differs in {', '.join(keys)}); the load hook must read back every "
                                      "public attribute")
    return first


class PyClassEpisode:
    def __init__(self, env: PyClassEnvironment, episode_id: str | None, state, check_outputs: bool):
        self.env, self.id, self.check_outputs = env, episode_id or uuid.uuid4().hex, check_outputs
        self.calls: list[CallRecord] = []
        self._lock = threading.RLock()
        self.reset(state)

    def _load(self, data: bytes) -> None:
        """Swap in a new instance holding ``data``; on any problem the current one stays."""
        try:
            state = json.loads(data)
        except (ValueError, TypeError, RecursionError) as exc:
            raise ValueError(f"not a snapshot of {self.env.name}: the state is not JSON ({str(exc)[:120]})") from None
        if not isinstance(state, dict):
            raise ValueError(f"not a snapshot of {self.env.name}: the state must be a JSON object of attributes")
        instance = self.env.cls()
        try:
            load_state(instance, state)
        except Exception as exc:
            raise ValueError(f"not a snapshot of {self.env.name}: {type(exc).__name__}: {exc}") from None
        self.instance = instance

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
        with self._lock:
            return self.env.hash_of(self._state_bytes())

    def diff(self, against: bytes | Snapshot | None = None) -> StateDiff:
        with self._lock:
            return self.env.diff_states(self._base if against is None else against, self._state_bytes())

    @property
    def base_state(self) -> bytes:
        return self._base

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
        try:
            tool.validate(arguments)
        except fastjsonschema.JsonSchemaValueException as exc:
            return self._fail(name, arguments, "invalid_arguments", _argument_error_message(name, exc))
        with self._lock:
            return self._run(tool, arguments)

    def _run(self, tool: PyClassTool, arguments: dict[str, Any]) -> ToolResult:
        try:
            kwargs = tool.coerce(arguments)
        except pydantic.ValidationError as exc:  # the schema allowed it, the type hints did not
            problems = "; ".join(f"argument {'.'.join(map(str, e['loc']))!r}: {e['msg']}" for e in exc.errors())
            return self._fail(tool.name, arguments, "invalid_arguments", f"invalid arguments for {tool.name}: {problems}")
        before = self._state_bytes()  # the snapshot a failed or refused call returns to
        try:
            output = to_json(getattr(self.instance, tool.name)(**kwargs))
        except MemoryError:
            raise
        except Exception as exc:  # these classes raise plain exceptions for domain errors
            self._load(before)
            return self._fail(tool.name, arguments, "domain", str(exc) or type(exc).__name__)
        if self.check_outputs:
            try:
                tool.validate_output(output)
            except fastjsonschema.JsonSchemaValueException as exc:
                self._load(before)
                return self._fail(tool.name, arguments, "internal",
                                  f"{tool.name} returned output that violates its output_schema: {exc.message}")
        wrote = self._state_bytes() != before
        if wrote and tool.read_only:
            self._load(before)
            return self._fail(tool.name, arguments, "read_only_violation",
                              f"{tool.name} is declared read-only but changed the state; its changes were undone")
        self.calls.append(CallRecord(tool.name, arguments, True, None, wrote))
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
    cls = load_class(package_dir / manifest.tools_module, manifest.class_name)
    missing = [t.name for t in manifest.tools if not callable(getattr(cls, t.name, None))]
    if missing:
        raise EnvironmentPackageError(str(package_dir), f"class {manifest.class_name} has no method for tools {missing}")
    initial = read_package_json(package_dir, manifest.seed, dict, "the initial state as a JSON object")
    try:
        return PyClassEnvironment(package_dir, manifest, cls, initial)
    except fastjsonschema.JsonSchemaDefinitionException as exc:  # e.g. a $ref to nowhere
        raise EnvironmentPackageError(str(package_dir), f"a tool's schemas cannot be compiled: {exc}") from None
