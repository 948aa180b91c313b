"""Environments and their isolated episodes: the one contract used by synthesis, rollouts,
rewards and exports.

``Environment`` loads a package once (manifest, tool code, initial database bytes).
``Episode`` owns an in-memory SQLite copy of the state; calls, reset, snapshot, restore, diff
and hash all act on that copy only, so any number of episodes can run side by side.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sqlite3
import sys
import threading
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import fastjsonschema

from envfactory.envs.runtime import state as st
from envfactory.envs.runtime.arguments import argument_problem, json_problem, loads_arguments
from envfactory.envs.runtime.context import ToolContext
from envfactory.envs.runtime.errors import (DomainError, EnvironmentPackageError, InvalidArgumentsError, ReadOnlyViolationError,
                     ToolCallError, ToolCrashError, ToolError, UnknownToolError, UntrustedCodeError)
from envfactory.envs.runtime.manifest import Manifest, ToolSpec, load_manifest, read_package_json
from envfactory.envs.runtime.readonly import query_read_only
from envfactory.envs.runtime.package_checks import check_seed, check_volatile_columns
from envfactory.envs.runtime.packages import resolve_package
from envfactory.envs.runtime.snapshot_check import snapshot_problem
from envfactory.envs.runtime.trust import is_trusted, untrusted_reason

_import_lock = threading.RLock()  # tools modules execute one at a time (see _import_tools_module)


# ---------------------------------------------------------------- results

@dataclass(slots=True)
class ToolResult:
    tool: str
    arguments: dict[str, Any]
    ok: bool
    output: Any = None
    error: str | None = None
    error_kind: str | None = None

    @property
    def text(self) -> str:
        """What the agent reads: the output as JSON text, or the error message."""
        if self.ok:
            return json.dumps(self.output, ensure_ascii=False)
        return self.error or "error"

    def raise_for_error(self) -> "ToolResult":
        if not self.ok:
            cls = {c.kind: c for c in (UnknownToolError, InvalidArgumentsError, DomainError, ToolCrashError,
                                       ReadOnlyViolationError)}.get(self.error_kind, ToolCallError)
            raise cls(self.tool, self.error or "error")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments": self.arguments, "ok": self.ok, "output": self.output,
                "error": self.error, "error_kind": self.error_kind}


# ---------------------------------------------------------------- tools

class BoundTool:
    """A tool spec joined to its implementation and its compiled argument validator."""

    __slots__ = ("spec", "fn", "validate", "validate_output", "name", "read_only")

    def __init__(self, spec: ToolSpec, fn: Callable[..., Any]):
        self.spec = spec
        self.fn = fn
        self.name = spec.name
        self.read_only = spec.read_only
        # use_default=False: validation must not write schema defaults into the caller's arguments
        self.validate = fastjsonschema.compile(spec.input_schema, use_default=False)
        self.validate_output = fastjsonschema.compile(spec.output_schema, use_default=False)


def _argument_error_message(tool: str, exc: fastjsonschema.JsonSchemaValueException) -> str:
    msg = exc.message
    field_name = exc.name[5:] if exc.name.startswith("data.") else ""
    if field_name:
        msg = msg.replace(exc.name, f"argument {field_name!r}", 1)
    else:
        msg = msg.replace("data ", "arguments ", 1)
    return f"invalid arguments for {tool}: {msg}"


def tools_module_name(package_dir: Path, manifest: Manifest) -> str:
    """The ``sys.modules`` name of a package's tools module: one per package folder and source text,
    so two packages (even of one name) or two versions of a package never share an entry, and
    reloading unchanged code replaces its own entry instead of piling up new ones."""
    path = (Path(package_dir) / manifest.tools_module).resolve()
    digest = hashlib.sha256(str(path).encode() + b"\0" + path.read_bytes()).hexdigest()[:16]
    return f"envfactory_env_{re.sub(r'[^0-9A-Za-z_]', '_', manifest.name)}_{digest}"


def _import_tools_module(package_dir: Path, manifest: Manifest):
    path = package_dir / manifest.tools_module
    try:
        name = tools_module_name(package_dir, manifest)
    except OSError as exc:
        raise EnvironmentPackageError(str(package_dir), f"cannot read {manifest.tools_module}: {exc}") from exc
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as a normal import does: dataclasses, pydantic and get_type_hints
    # look postponed annotations up through sys.modules[cls.__module__]. One import at a time, so
    # two threads loading one package never see each other's half-run module under that name.
    with _import_lock:
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except MemoryError:
            sys.modules.pop(name, None)
            raise  # resource exhaustion is the sandbox's to report, not a package error
        except (Exception, SystemExit) as exc:  # a broken module (even one calling exit()) is the package's fault
            sys.modules.pop(name, None)
            raise EnvironmentPackageError(str(package_dir), f"{manifest.tools_module} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


# ---------------------------------------------------------------- environment

# Loaders of packages whose backend is not SQLite, by ``env.json``'s ``backend``. Registered by the
# sub-package that implements them (``envfactory.envs.imports`` registers ``pyclass``), so this
# module never imports its own extensions.
BACKENDS: dict[str, Callable[[Path, Manifest], "EnvironmentBase"]] = {}


def register_backend(name: str, loader: Callable[[Path, Manifest], "EnvironmentBase"]) -> None:
    BACKENDS[name] = loader


# How packages this process may not run are opened instead: ``envfactory.envs.sandbox`` registers a
# loader of contained environments (``SandboxedEnvironment``) when it is imported.
SANDBOX: dict[str, Callable[[Path], "EnvironmentBase"]] = {}
SANDBOX_ALL_VAR = "ENVFACTORY_SANDBOX_ALL"  # "1": sandbox even bundled and trusted packages


def register_sandbox(loader: Callable[[Path], "EnvironmentBase"]) -> None:
    SANDBOX["loader"] = loader


class EnvironmentBase:
    """What every backend's environment shares (SQLite packages, imported classes)."""

    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def tool_specs(self) -> list[ToolSpec]:
        return list(self.manifest.tools)


class Environment(EnvironmentBase):
    """A loaded environment package. Cheap to share; all mutable state lives in episodes."""

    def __init__(self, package_dir: Path, manifest: Manifest, tools: dict[str, BoundTool], initial: bytes):
        self.package_dir = package_dir
        self.manifest = manifest
        self.tools = tools
        self.initial_state = initial
        conn = self._scratch(initial)
        self.tables = st.read_tables(conn, manifest.volatile_columns)
        # What the hash reads of each table in the initial state: an episode's hash re-reads only
        # the tables it has written (same bytes hashed, so the same hash as a full scan).
        sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
        # ... and a touched table's rows in hash order, so its hash reads only the changed rows
        self.section_indexes = {name: st.SectionIndex.build(conn, t, sql.get(name)) for name, t in self.tables.items()}
        self.initial_sections = {name: index.section if index is not None else st.table_section(conn, self.tables[name])
                                 for name, index in self.section_indexes.items()}
        self.initial_hash = st.state_hash(conn, self.tables, known=self.initial_sections)
        self._schema_version = conn.execute("PRAGMA schema_version").fetchone()[0]
        main_triggers = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0]
        self._has_sequence = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone() is not None
        conn.close()
        self.all_rowid = all(t.has_rowid for t in self.tables.values())  # change tracking sees every write
        # The change log sees every write only with recursive triggers on: without them, the row a
        # REPLACE (INSERT OR REPLACE, UPDATE OR REPLACE) deletes to resolve a conflict fires no
        # delete trigger. Turning them on would change what a package's own triggers do (one that
        # writes its own table would recurse), so with package triggers the log is not trusted and
        # diffs, hashes and undo compare whole states instead.
        self.package_triggers = main_triggers
        self.log_complete = not main_triggers
        # Undoing logged writes is exact only when the log sees every write and nothing else
        # reacts to the undo (a trigger of the package's own would fire again).
        self._undo_ok = self.all_rowid and not main_triggers
        self.primary_keys = {n: (t.pk[0] if len(t.pk) == 1 else "rowid") for n, t in self.tables.items()}
        # Connections of closed episodes, kept for reuse: their temp change-tracking triggers survive
        # loading a new state, and creating them costs ~1.5 ms per episode, most of a short rollout's
        # state work (QueryGen makes several episodes per task).
        self._idle_connections: list[sqlite3.Connection] = []
        self._clean_idle: set[int] = set()  # ids of idle connections already back at the initial state
        self._idle_lock = threading.Lock()
        self._tracking_objects = 1 + 3 * sum(t.has_rowid for t in self.tables.values())

    IDLE_CONNECTIONS = 64

    @cached_property
    def initial_rows(self) -> st.RowsByRowid:
        """The initial state's rows by rowid, the base of episode diffs (built once, on first use,
        so a diff reads only the rollout's dirty rows and never attaches a copy of the base).
        Built from ``_initial_full_rows``: the initial database is scanned once, for both."""
        return st.rows_by_rowid_from_values(self.tables, self._initial_full_rows[0])

    UNDO_MAX_ROWS = 512  # beyond this many written rows, loading the initial bytes is cheaper

    def _take_connection(self) -> tuple[sqlite3.Connection | None, bool]:
        """An idle connection, and whether it already holds the initial state with an empty log."""
        with self._idle_lock:
            if not self._idle_connections:
                return None, False
            conn = self._idle_connections.pop()
            clean = id(conn) in self._clean_idle
            self._clean_idle.discard(id(conn))
            return conn, clean

    def _give_back(self, conn: sqlite3.Connection, undo: bool = False) -> bool:
        """Keep ``conn`` for a later episode if it holds nothing but the change tracking.
        ``undo``: its change log is complete relative to the initial state, so the connection may
        be brought back to that state by rewriting just the logged rows."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            temp = conn.execute("SELECT count(*) FROM temp.sqlite_master").fetchone()[0]
            attached = len(conn.execute("PRAGMA database_list").fetchall())
        except sqlite3.Error:
            return False
        if temp != self._tracking_objects or attached != 2:  # main + temp only: anything else, close it
            return False
        clean = undo and self._undo_writes(conn)
        with self._idle_lock:
            if len(self._idle_connections) >= self.IDLE_CONNECTIONS:
                return False
            self._idle_connections.append(conn)
            if clean:
                self._clean_idle.add(id(conn))
        return True

    @cached_property
    def _initial_full_rows(self) -> tuple[dict[str, dict[int, tuple]], list[tuple]]:
        """Every column of every initial row by rowid (tables with rowids: undo and diffs need every
        table to have them), and the initial ``sqlite_sequence``."""
        conn = self._scratch(self.initial_state)
        try:
            rows = {name: {r[0]: r[1:] for r in conn.execute(
                        f"SELECT rowid, {', '.join(st.quote(c) for c in t.columns)} FROM main.{st.quote(name)}")}
                    for name, t in self.tables.items() if t.has_rowid}
            seq = conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall() if self._has_sequence else []
            return rows, seq
        finally:
            conn.close()

    def _undo_writes(self, conn: sqlite3.Connection) -> bool:
        """Bring a closed episode's connection back to the initial state by deleting the rows its
        change log names and re-inserting their initial versions (a few statements: loading the
        initial bytes instead makes SQLite parse the whole schema again, ~0.4 ms here). Exact:
        every write since the initial state is in the log (the caller checks), the schema is
        unchanged (checked here) and no package trigger reacts (``_undo_ok``). False when it
        does not apply; the connection is then reloaded by the next episode as before."""
        try:
            if not self._undo_ok or conn.execute("PRAGMA main.schema_version").fetchone()[0] != self._schema_version:
                return False
            dirty = st.dirty_rowids(conn)
            if sum(len(r) for r in dirty.values()) > self.UNDO_MAX_ROWS or not set(dirty) <= set(self.tables):
                return False
            rows, seq = self._initial_full_rows
            conn.execute("PRAGMA foreign_keys = OFF")  # rows come back in any order; no cascades either
            try:
                conn.execute("BEGIN")
                for name, rids in dirty.items():
                    t, ids = self.tables[name], list(rids)
                    conn.execute(f"DELETE FROM main.{st.quote(name)} WHERE rowid IN ({','.join('?' * len(ids))})", ids)
                    back = [(rid, *rows[name][rid]) for rid in ids if rid in rows[name]]
                    if back:
                        cols = ", ".join(["rowid", *map(st.quote, t.columns)])
                        conn.executemany(f"INSERT INTO main.{st.quote(name)} ({cols}) VALUES ({','.join('?' * (len(t.columns) + 1))})", back)
                if self._has_sequence:
                    conn.execute("DELETE FROM main.sqlite_sequence")
                    conn.executemany("INSERT INTO main.sqlite_sequence (name, seq) VALUES (?, ?)", seq)
                st.clear_dirty(conn)
                conn.execute("COMMIT")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                return False
            finally:
                conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error:
            return False
        return True

    @classmethod
    def load(cls, ref: str | Path, *, trust: bool = False) -> "Environment":
        """Load a package by catalog name or folder path.

        Tool code runs in this process, so only bundled or verified packages load unless
        ``trust=True``; anything else must go through the sandbox (``envfactory envs validate``).
        """
        package_dir = resolve_package(ref)
        manifest = load_manifest(package_dir)
        if not trust and not is_trusted(package_dir):
            raise UntrustedCodeError(untrusted_reason(package_dir))
        if manifest.backend in BACKENDS:  # another kind of package (imported Python classes, ...)
            return BACKENDS[manifest.backend](package_dir, manifest)
        module = _import_tools_module(package_dir, manifest)
        tools = {}
        for spec in manifest.tools:
            fn = getattr(module, spec.name, None)
            if not callable(fn):
                raise EnvironmentPackageError(str(package_dir), f"tool {spec.name!r} is declared in env.json but {manifest.tools_module} defines no function of that name")
            try:
                tools[spec.name] = BoundTool(spec, fn)
            except fastjsonschema.JsonSchemaDefinitionException as exc:  # e.g. a $ref to nowhere
                raise EnvironmentPackageError(str(package_dir), f"tool {spec.name!r}: its schemas cannot be compiled: {exc}") from None
        initial = build_initial_state(package_dir, manifest)
        env = cls(package_dir, manifest, tools, initial)
        check_volatile_columns(str(package_dir), manifest.volatile_columns, {n: t.columns for n, t in env.tables.items()})
        return env

    @classmethod
    def open(cls, ref: str | Path) -> "EnvironmentBase":
        """The environment of a package, wherever its code may run: in this process when it is
        bundled or trusted by the user, otherwise in a contained child server (the same contract).
        ``ENVFACTORY_SANDBOX_ALL=1`` sandboxes every package."""
        package_dir = resolve_package(ref)
        sandbox_all = os.environ.get(SANDBOX_ALL_VAR) == "1"
        if not sandbox_all and is_trusted(package_dir):
            return cls.load(ref)
        manifest = load_manifest(package_dir)
        if "loader" not in SANDBOX or manifest.backend != "sqlite":
            if sandbox_all and is_trusted(package_dir):
                return cls.load(ref)
            raise UntrustedCodeError(untrusted_reason(package_dir) + (
                "" if manifest.backend == "sqlite" else f" (the sandbox serves SQLite packages; this is {manifest.backend!r})"))
        return SANDBOX["loader"](package_dir)

    def episode(self, episode_id: str | None = None, state: "bytes | st.Snapshot | None" = None,
                check_outputs: bool = False) -> "Episode":
        return Episode(self, episode_id=episode_id, state=state, check_outputs=check_outputs)

    def _scratch(self, data: bytes) -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.deserialize(data)
        return conn

    def hash_of(self, data: bytes) -> str:
        conn = self._scratch(data)
        try:
            return st.state_hash(conn, self.tables)
        finally:
            conn.close()

    def diff_states(self, before: "bytes | st.Snapshot", after: "bytes | st.Snapshot") -> st.StateDiff:
        """Full cell-level diff of two arbitrary states of this environment."""
        conn = self._scratch(_bytes(before))
        try:
            conn.execute("ATTACH ':memory:' AS other")
            conn.deserialize(_bytes(after), name="other")
            return st.diff_schemas(conn, self.tables, "main", "other")
        finally:
            conn.close()


def _bytes(state: "bytes | st.Snapshot") -> bytes:
    return state.data if isinstance(state, st.Snapshot) else state


_initial_cache: dict[tuple[str, str], bytes] = {}
_initial_lock = threading.Lock()


def build_initial_state(package_dir: Path, manifest: Manifest) -> bytes:
    """Create the schema, insert the seed rows, and serialize: the bytes every episode starts from."""
    schema_path, seed_path = package_dir / manifest.schema_file, package_dir / manifest.seed
    key = (str(package_dir), hashlib.sha256(schema_path.read_bytes() + seed_path.read_bytes()).hexdigest())
    with _initial_lock:
        if key in _initial_cache:
            return _initial_cache[key]
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        # Foreign keys are checked after loading, so the error can name the offending row.
        try:
            conn.executescript(schema_path.read_text(encoding="utf-8"))
        except sqlite3.Error as exc:
            raise EnvironmentPackageError(str(package_dir), f"{manifest.schema_file} does not execute: {exc}") from None
        except UnicodeDecodeError as exc:
            raise EnvironmentPackageError(str(package_dir), f"{manifest.schema_file} is not UTF-8 text (byte {exc.start})") from None
        seed = read_package_json(package_dir, manifest.seed, dict, "an object mapping table names to lists of rows")
        check_seed(str(package_dir), manifest.seed, seed)
        import sqlite_utils
        db = sqlite_utils.Database(conn)
        existing = set(db.table_names())
        conn.execute("BEGIN")
        for table, rows in seed.items():
            if table not in existing:
                raise EnvironmentPackageError(str(package_dir), f"{manifest.seed} has rows for table {table!r}, which {manifest.schema_file} does not create")
            try:
                db[table].insert_all(rows, alter=False)
            except (sqlite3.Error, ValueError) as exc:
                raise EnvironmentPackageError(str(package_dir), f"{manifest.seed}: rows of table {table!r} do not fit the schema: {exc}") from None
        conn.execute("COMMIT")
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            t, rowid, parent, _ = problems[0]
            raise EnvironmentPackageError(str(package_dir), f"{manifest.seed}: {len(problems)} foreign-key violations, first: {t} row {rowid} points to a missing {parent} row")
        data = conn.serialize()
    finally:
        conn.close()
    with _initial_lock:
        _initial_cache[key] = data
    return data


# ---------------------------------------------------------------- episodes

@dataclass(slots=True)
class CallRecord:
    tool: str
    arguments: dict[str, Any]
    ok: bool
    error_kind: str | None
    wrote: bool
    warnings: list[str] | tuple = ()  # imported tools: arguments passed as given against their annotation


class Episode:
    """One isolated copy of an environment's state and the calls made on it."""

    def __init__(self, env: Environment, episode_id: str | None = None, state: "bytes | st.Snapshot | None" = None,
                 check_outputs: bool = False):
        self.env = env
        self.id = episode_id or uuid.uuid4().hex
        self.check_outputs = check_outputs
        self.calls: list[CallRecord] = []
        reused, clean = env._take_connection() if isinstance(env, Environment) else (None, False)
        self.conn = reused or sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA foreign_keys = ON")
        if not getattr(env, "package_triggers", 0):  # REPLACE's implicit deletes reach the change log
            self.conn.execute("PRAGMA recursive_triggers = ON")
        self._tracking_installed = reused is not None  # a reused connection keeps its triggers
        self._base: bytes = env.initial_state
        self._base_attached = False
        self._lock = threading.RLock()  # MCP servers may reach one episode from several threads
        self.ctx = ToolContext(self.conn, env.manifest.clock, env.name, env.primary_keys)
        if not (clean and state is None):  # a clean connection already holds the initial state, log empty
            # Change tracking is installed at the first write: read-only episodes never pay for it,
            # and until then nothing has changed, so an empty change log is the truth.
            self._load(env.initial_state if state is None else _bytes(state), base=True)
        self._tracking_valid = True

    # -- state management
    def _load(self, data: bytes, base: bool) -> None:
        self.conn.deserialize(data)
        self.conn.execute("PRAGMA foreign_keys = ON")
        if self._tracking_installed:
            st.relink_change_tracking(self.conn)
        if base:  # a new base: the change log starts empty (a reused connection keeps its old rows)
            if self._tracking_installed:
                st.clear_dirty(self.conn)
            self._base = data
            if self._base_attached:
                self.conn.execute("DETACH base")
                self._base_attached = False

    def reset(self, state: "bytes | st.Snapshot | None" = None) -> None:
        """Back to the environment's initial state, or to ``state``, which becomes the new base."""
        with self._lock:
            data = self.env.initial_state if state is None else _bytes(state)
            self._load(data, base=True)
            self._tracking_valid = True
            self.calls.clear()

    def snapshot(self) -> st.Snapshot:
        with self._lock:
            return st.Snapshot(self.conn.serialize(), self._dirty())

    def restore(self, snap: st.Snapshot) -> None:
        """Return to a snapshot taken on this episode (the base state is kept). Bytes that are not a
        snapshot of this environment raise ValueError and leave the episode as it was."""
        problem = snapshot_problem(self.env, snap.data, snap.dirty)
        if problem:
            raise ValueError(f"not a snapshot of {self.env.name}: {problem}")
        with self._lock:
            self._load(snap.data, base=False)
            if snap.dirty is None:
                self._tracking_valid = False
            else:
                if not self._tracking_installed:
                    st.install_change_tracking(self.conn, self.env.tables)
                    self._tracking_installed = True
                st.restore_dirty(self.conn, snap.dirty)
                self._tracking_valid = True

    def state_hash(self) -> str:
        with self._lock:
            dirty = self._dirty_since_initial()  # no tracking yet: nothing written, {}
            if dirty is None:
                return st.state_hash(self.conn, self.env.tables)
            if not dirty:
                return self.env.initial_hash  # the change log proves nothing changed: skip the scan
            # tables the change log shows untouched hash as they did initially; touched ones read
            # only their changed rows
            return st.state_hash_from_changes(self.conn, self.env.tables, self.env.initial_sections,
                                              self.env.section_indexes, dirty)

    def _dirty_since_initial(self) -> dict[str, set[int]] | None:
        """Rowids written since the environment's initial state, or None when the change log
        cannot tell (another base, a restore without its log, a table without rowids)."""
        if not (isinstance(self.env, Environment) and self._tracking_valid and self._base is self.env.initial_state
                and self.env.all_rowid and self.env.log_complete):
            return None
        return self._dirty()

    def diff(self, against: "bytes | st.Snapshot | None" = None) -> st.StateDiff:
        """What changed from the base state (or from ``against``) to now."""
        with self._lock:
            if against is not None:
                return self.env.diff_states(_bytes(against), self.conn.serialize())
            dirty = self._dirty_since_initial()
            if dirty is not None:  # base rows come from the environment's cache, no attached copy
                return st.diff_from_rows(self.conn, self.env.tables, self.env.initial_rows, dirty)
            if not self._base_attached:
                self.conn.execute("ATTACH ':memory:' AS base")
                self.conn.deserialize(self._base, name="base")
                self._base_attached = True
            return st.diff_schemas(self.conn, self.env.tables, "base", "main", self._dirty())

    def _dirty(self) -> dict[str, set[int]] | None:
        if not self._tracking_valid or not getattr(self.env, "log_complete", True):
            return None
        return st.dirty_rowids(self.conn) if self._tracking_installed else {}

    @property
    def base_state(self) -> bytes:
        return self._base

    def query(self, sql: str, params=()) -> list[tuple]:
        """Rows of a read-only query of the current state (writes and ATTACH are refused)."""
        with self._lock:
            return query_read_only(self.conn, sql, params)

    # -- tool calls
    def call(self, name: str, arguments: dict[str, Any] | str | None = None) -> ToolResult:
        """Run one tool call in a transaction. Never raises for a bad call: the result says why."""
        tool = self.env.tools.get(name)
        if arguments is None:
            arguments = {}
        elif isinstance(arguments, str):
            try:
                arguments = loads_arguments(arguments) if arguments.strip() else {}
            except ValueError as exc:
                return self._fail(name, {}, "invalid_arguments", f"invalid arguments for {name}: not valid JSON ({json_problem(exc)})")
        if tool is None:
            known = ", ".join(sorted(self.env.tools))
            return self._fail(name, arguments if isinstance(arguments, dict) else {}, "unknown_tool",
                              f"unknown tool {name!r}; available tools: {known}")
        if not isinstance(arguments, dict):
            return self._fail(name, {}, "invalid_arguments",
                              f"invalid arguments for {name}: expected a JSON object, got {type(arguments).__name__}")
        problem = argument_problem(arguments)  # what no schema bounds: the agent's doing, never "internal"
        if problem:
            return self._fail(name, arguments, "invalid_arguments", f"invalid arguments for {name}: {problem}")
        try:
            tool.validate(arguments)
        except fastjsonschema.JsonSchemaValueException as exc:
            return self._fail(name, arguments, "invalid_arguments", _argument_error_message(name, exc))
        with self._lock:
            return self._run(tool, arguments)

    def _run(self, tool: BoundTool, arguments: dict[str, Any]) -> ToolResult:
        conn = self.conn
        if not self._tracking_installed:
            st.install_change_tracking(conn, self.env.tables)
            self._tracking_installed = True
        before = conn.total_changes
        conn.execute("BEGIN")
        try:
            output = tool.fn(self.ctx, **arguments)
            if self.check_outputs:
                self._check_output(tool, output)
        except ToolError as exc:
            self._rollback()
            return self._fail(tool.name, arguments, "domain", str(exc) or f"{tool.name} failed")
        except ToolCallError as exc:
            self._rollback()
            return self._fail(tool.name, arguments, exc.kind, exc.message)
        except MemoryError:
            self._rollback()
            raise
        except (Exception, SystemExit) as exc:  # a bug in the environment (even exit()), not the agent's fault
            self._rollback()
            return self._fail(tool.name, arguments, "internal", f"{tool.name} failed with an internal error: {type(exc).__name__}: {exc}")
        wrote = conn.total_changes != before
        if wrote and tool.read_only:
            self._rollback()
            return self._fail(tool.name, arguments, "read_only_violation",
                              f"{tool.name} is declared read-only but changed the state; its writes were rolled back")
        if conn.in_transaction:
            conn.execute("COMMIT")
        self.calls.append(CallRecord(tool.name, arguments, True, None, wrote))
        return ToolResult(tool.name, arguments, True, output)

    def _check_output(self, tool: BoundTool, output: Any) -> None:
        try:
            json.dumps(output, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ToolCrashError(tool.name, f"{tool.name} returned a value that is not JSON: {exc}") from None
        try:
            tool.validate_output(output)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise ToolCrashError(tool.name, f"{tool.name} returned output that violates its output_schema: {exc.message}") from None

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _fail(self, name: str, arguments: dict, kind: str, message: str) -> ToolResult:
        self.calls.append(CallRecord(name, arguments, False, kind, False))
        return ToolResult(name, arguments, False, None, message, kind)

    def close(self) -> None:
        with self._lock:  # never while a call of another thread is using the connection
            self._close()

    def _close(self) -> None:
        conn, self.conn, self.ctx = self.conn, None, None  # a closed episode can no longer reach the connection
        if conn is None:
            return
        if self._base_attached:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("DETACH base")
            except sqlite3.Error:
                pass  # still attached: _give_back sees it and the connection is closed instead
        undo = self._tracking_valid and self._base is getattr(self.env, "initial_state", None)
        if not (self._tracking_installed and isinstance(self.env, Environment) and self.env._give_back(conn, undo)):
            conn.close()

    def __enter__(self) -> "Episode":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
