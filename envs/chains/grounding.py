"""Values a user could state, grounded in an episode's current data.

A user asks about *their* order, an email that exists, a product that is on sale: so argument
values are drawn from the rows of the episode's database (or the schema's enums and defaults),
never invented. Deterministic for a seed.
"""
from __future__ import annotations

import random
import re
from datetime import date, timedelta
from typing import Any

from envfactory.envs.runtime.environment import Environment, Episode

_SEARCH_NAMES = {"query", "q", "search", "keyword", "keywords", "text", "term"}
_START_WORDS = ("start", "from", "check_in", "checkin", "begin", "after", "since")
_END_WORDS = ("end", "to", "until", "check_out", "checkout", "before")


def _singular(word: str) -> str:
    return word[:-3] + "y" if word.endswith("ies") else word[:-1] if word.endswith("s") else word


def json_columns(state: Any, limit: int = 20000) -> dict[str, list[Any]]:
    """Field name -> its distinct scalar values, over every object in a JSON state (an imported
    class's entities), plus each top-level table's keys under the table's id-like names
    (``vans`` keyed by van id gives ``van_id``, ``vanId`` and ``id``)."""
    columns: dict[str, dict[Any, None]] = {}
    queue, seen = [state], 0
    while queue and seen < limit:
        node = queue.pop()
        seen += 1
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                    columns.setdefault(k, {})[v] = None
                elif isinstance(v, (dict, list)):
                    queue.append(v)
        elif isinstance(node, list):
            queue.extend(v for v in node if isinstance(v, (dict, list)))
    if isinstance(state, dict):
        for table, rows in state.items():
            if isinstance(rows, dict) and rows:
                stem = _singular(table)
                for name in (f"{stem}_id", f"{stem}Id", f"{stem}_name", f"{stem}_code"):
                    bucket = columns.setdefault(name, {})
                    for key in list(rows)[:500]:
                        bucket[key] = None
    return {k: list(v) for k, v in columns.items()}


class Grounder:
    def __init__(self, env: Environment):
        self.env = env
        self.columns: dict[str, list[str]] = {}      # column name -> tables holding it
        # Imported classes keep their state as JSON, not SQLite tables: values come from its fields.
        self.json_state = not hasattr(env, "_scratch")
        if self.json_state:
            self._json_initial = json_columns(getattr(env, "initial_dict", {}))
            self.columns = {c: ["(state)"] for c in self._json_initial}
        for t in ([] if self.json_state else env.tables.values()):
            for c in t.columns:
                self.columns.setdefault(c, []).append(t.name)
        # Query results on the environment's initial state, which never changes: most grounded
        # values are drawn before a chain's first write, and each costs SQL queries otherwise.
        self._initial: dict[str, list[tuple]] = {}  # SQL -> rows
        self._initial_values: dict[tuple[str, int], list[Any]] = {}  # (column, limit) -> values

    def arguments(self, tool: str, ep: Episode, seed: int | str = 0, fixed: dict[str, Any] | None = None,
                  optional_rate: float = 0.0, tool_graph=None, node: str | None = None,
                  skip: set[str] | frozenset = frozenset(), initial_state: bool = False) -> dict[str, Any] | None:
        """Arguments for ``tool``: ``fixed`` values first, then grounded values for the required
        parameters (and optional ones at ``optional_rate``). None when a required value cannot be grounded.

        ``initial_state`` is the caller's promise that ``ep`` still holds the environment's initial
        state (no write yet): values then come from a per-environment cache instead of SQL."""
        spec = self._spec(tool)
        if spec is None:
            raise ValueError(f"environment {self.env.name!r} has no tool {tool!r}")
        rng = random.Random(f"{tool}:{seed}")
        fixed = dict(fixed or {})
        required = set(spec.input_schema.get("required", []))
        args: dict[str, Any] = {}
        for name, schema in spec.input_schema.get("properties", {}).items():
            if name in fixed:
                args[name] = fixed[name]
                continue
            if name in skip:
                continue
            optional = name not in required
            if optional and (name in spec.maskable_arguments or rng.random() >= optional_rate):
                continue
            value = self.value(tool, name, schema, ep, rng, cached=initial_state)
            if value is None or optional and value == schema.get("default"):
                if not optional:
                    return None
                continue  # an optional argument set to its default says nothing
            args[name] = value
        return args

    def value(self, tool: str, name: str, schema: dict[str, Any], ep: Episode, rng: random.Random,
              cached: bool = False) -> Any:
        if "enum" in schema:
            present = self._column_values(name, ep, rng, limit=50, cached=cached)
            options = [v for v in schema["enum"] if v in present] or list(schema["enum"])
            return rng.choice(options)
        typ = schema.get("type")
        if typ == "boolean":
            return rng.choice([True, False])
        if typ == "array":
            item = self.value(tool, _singular(name), schema.get("items", {}), ep, rng, cached=cached)
            return None if item is None else [item]
        if name in _SEARCH_NAMES and typ == "string":
            return self._search_word(tool, ep, rng, cached=cached)
        date_like = typ == "string" and (schema.get("format") in ("date", "date-time") or re.search(r"(date|_on$|_at$|day)", name))
        spec = self._spec(tool)
        if date_like and spec is not None and not spec.read_only:
            return self._date(name, schema)  # a write asks for a day to come, not one from the records
        if name in self.columns:
            values = self._column_values(name, ep, rng, cached=cached)
            if values:
                return rng.choice(values)
        if date_like:
            return self._date(name, schema)
        if typ in ("integer", "number"):
            if "default" in schema:
                return schema["default"]
            low = schema.get("minimum", 1)
            return low if typ == "integer" else float(low)
        if "default" in schema:
            return schema["default"]
        if schema.get("examples"):
            return rng.choice(schema["examples"])
        return None

    def _spec(self, tool: str):
        bound = self.env.tools.get(tool)  # the environment's own name -> tool index
        return None if bound is None else bound.spec

    def _rows(self, ep: Episode, sql: str, cached: bool) -> list[tuple]:
        if not cached:
            return ep.conn.execute(sql).fetchall()
        rows = self._initial.get(sql)
        if rows is None:
            rows = self._initial[sql] = ep.conn.execute(sql).fetchall()
        return rows

    def _column_values(self, name: str, ep: Episode, rng: random.Random, limit: int = 200,
                       cached: bool = False) -> list[Any]:
        if cached and (name, limit) in self._initial_values:
            return self._initial_values[name, limit]
        if self.json_state:
            found = self._json_initial if cached else json_columns(ep.state_json())
            return sorted(found.get(name, []), key=lambda v: (str(type(v)), v))[:limit]
        values: list[Any] = []
        for table in self.columns.get(name, []):
            # not through ``_rows``' cache: the combined values are what is kept, below
            rows = ep.conn.execute(f'SELECT DISTINCT "{name}" FROM "{table}" WHERE "{name}" IS NOT NULL '
                                   f'ORDER BY "{name}" LIMIT {int(limit)}').fetchall()
            values += [r[0] for r in rows]
        if cached:
            self._initial_values[name, limit] = values  # callers only read it
        return values

    def _search_word(self, tool: str, ep: Episode, rng: random.Random, cached: bool = False) -> str | None:
        if self.json_state:
            found = self._json_initial if cached else json_columns(ep.state_json())
            texts = [str(v) for c in ("title", "name", "subject", "summary") for v in found.get(c, [])[:100]]
            tokens = [w for t in texts for w in re.findall(r"[A-Za-z][A-Za-z'-]{3,}", t)]
            return max(sorted(set(tokens))[:50], key=len) if tokens else None
        words = tool.split("_")
        tables = [t for t in self.env.tables if t in words or _singular(t) in words] or list(self.env.tables)
        for table in tables:
            cols = [c for c in self.env.tables[table].columns if c in ("title", "name", "subject", "summary")]
            for col in cols:
                rows = self._rows(ep, f'SELECT "{col}" FROM "{table}" WHERE "{col}" IS NOT NULL ORDER BY rowid LIMIT 100', cached)
                if rows:
                    text = str(rng.choice(rows)[0])
                    tokens = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]{3,}", text) if w.lower() not in ("the", "with", "from")]
                    if tokens:
                        return max(tokens, key=len)
        return None

    def _date(self, name: str, schema: dict[str, Any]) -> str:
        today = date.fromisoformat(self.env.manifest.clock[:10])
        offset = 7
        if any(w in name for w in _END_WORDS):
            offset = 10
        elif any(w in name for w in _START_WORDS):
            offset = 7
        day = today + timedelta(days=offset)
        return day.isoformat() if schema.get("format") != "date-time" else f"{day.isoformat()}T10:00:00Z"
