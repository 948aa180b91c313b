"""An environment's own tests: declarative cases in ``tests.json``, run against fresh episodes.

```json
{"cases": [
  {"name": "checkout lowers available copies",
   "steps": [
     {"call": "find_member", "args": {"email": "ada@example.org"}, "save": "m"},
     {"call": "checkout_book", "args": {"member_id": "$m.member_id", "book_id": 3},
      "expect": {"ok": true, "output": {"status": "active"}},
      "expect_state": [{"sql": "SELECT available_copies FROM books WHERE book_id = 3", "rows": [[1]]}]},
     {"call": "checkout_book", "args": {"member_id": 999, "book_id": 3},
      "expect": {"ok": false, "error_contains": "member 999 does not exist"}, "expect_unchanged": true}]}]}
```
``"$name.path"`` strings refer to an earlier step's saved output. In ``output``, dicts match as
subsets, lists element by element, numbers with a tolerance; ``{"$len": n}``, ``{"$contains": s}``
``{"$any": true}`` and ``{"$excludes": {...}}`` (no list element matches) are matchers. Every executed step counts toward coverage: a tool is covered
on its success path when a step expecting success passes, and on its error path likewise.
A write tool (not ``read_only``) whose call succeeds must change the state: a success that changes
nothing fails the step, unless the step says ``expect_unchanged`` (an intended no-op).
"""
from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from envfactory.envs.runtime.environment import Environment


class StateCheck(BaseModel):
    """A check of the state after a step: an SQL query and its rows (SQLite packages), or a path
    into the JSON state of an imported class with the value found there (subset matching) or
    ``absent``."""
    model_config = ConfigDict(extra="forbid")
    sql: str | None = None
    rows: list[list[Any]] | None = None
    path: list[str | int] | None = None
    value: Any = None
    absent: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> "StateCheck":
        if (self.sql is None) == (self.path is None):
            raise ValueError("a state check has either sql (with rows) or path (with value or absent)")
        if self.sql is not None and self.rows is None:
            raise ValueError("an sql state check needs rows")
        return self


def _walk(state: Any, path: list[str | int]) -> tuple[bool, Any]:
    cur = state
    for part in path:
        if isinstance(cur, list) and str(part).lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and str(part) in cur:
            cur = cur[str(part)]
        else:
            return False, None
    return True, cur


def check_state(ep, check: StateCheck) -> list[str]:
    """Problems with one state check on an episode (empty when it holds)."""
    if check.sql is not None:
        query = getattr(ep, "query", None)
        if query is None:
            return [f"state check {check.sql!r}: SQL checks need a SQLite environment; use a path check"]
        try:  # read-only: a test query may not write, ATTACH a file or load an extension
            rows = [list(r) for r in query(check.sql)]
        except sqlite3.Error as exc:
            return [f"state check {check.sql!r} failed: {exc}"]
        diffs = match(check.rows, rows, "rows")
        return [f"state check {check.sql!r}: " + "; ".join(diffs)] if diffs else []
    state_json = getattr(ep, "state_json", None)
    if state_json is None:
        return [f"state check {check.path}: path checks need an imported (JSON state) environment"]
    found, value = _walk(state_json(), check.path)
    where = "state." + ".".join(map(str, check.path))
    if check.absent:
        return [f"{where}: expected absent, found {json.dumps(value)[:120]}"] if found else []
    if not found:
        return [f"{where}: missing"]
    return match(check.value, value, where)


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ok: bool
    output: Any = None
    error_contains: str | None = None
    error_kind: str | None = None


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call: str
    args: dict[str, Any] = Field(default_factory=dict)
    save: str | None = None
    expect: Expectation
    expect_state: list[StateCheck] = Field(default_factory=list)
    expect_unchanged: bool = False


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    steps: list[Step] = Field(min_length=1)


class TestSuite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cases: list[Case] = Field(min_length=1)
    # Tool paths no case reaches, declared with why ("get_van (success path)": "..."): written by the
    # importer for what its exploration could not reach; validation reports them instead of failing.
    # Only imported (pyclass) packages may declare them.
    uncovered: dict[str, str] = Field(default_factory=dict)


class CaseResult(BaseModel):
    name: str
    passed: bool
    failures: list[str] = []
    step_hashes: list[str] = []          # state hash after each step (for the determinism check)
    outputs: list[str] = []              # each step's agent-visible text


class SuiteReport(BaseModel):
    cases: list[CaseResult]
    coverage: dict[str, dict[str, bool]]  # tool -> {"success": bool, "error": bool}

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed

    def uncovered(self) -> list[str]:
        return [f"{tool} ({path} path)" for tool, paths in sorted(self.coverage.items())
                for path, hit in paths.items() if not hit]


def load_suite(path: Path) -> TestSuite:
    return TestSuite.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


class UnresolvedReference(ValueError):
    """A ``$name.path`` argument that does not lead to a value (its message says where it stops)."""


def _resolve(value: Any, saved: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$") and not value.startswith("$$"):
        name, _, path = value[1:].partition(".")
        if name not in saved:
            raise UnresolvedReference(f"reference {value!r}: nothing was saved as {name!r}")
        cur, walked = saved[name], f"${name}"
        for part in filter(None, path.split(".")):
            try:
                cur = cur[int(part)] if isinstance(cur, list) else cur[part]
            except (KeyError, IndexError, ValueError, TypeError):
                what = (f"a list of {len(cur)}" if isinstance(cur, list) else
                        f"an object with keys {', '.join(map(str, list(cur)[:10]))}" if isinstance(cur, dict) else
                        f"the {type(cur).__name__} {json.dumps(cur)[:60]}")
                raise UnresolvedReference(f"reference {value!r}: {walked} is {what}, so it has no {part!r}") from None
            walked += f".{part}"
        return cur
    if isinstance(value, dict):
        return {k: _resolve(v, saved) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, saved) for v in value]
    return value


def match(expected: Any, actual: Any, where: str = "output") -> list[str]:
    """Differences between an expectation and an actual value (empty when they match)."""
    if isinstance(expected, dict) and len(expected) == 1 and next(iter(expected)).startswith("$"):
        op, arg = next(iter(expected.items()))
        if op == "$len":
            n = len(actual) if isinstance(actual, (list, dict, str)) else None
            return [] if n == arg else [f"{where}: expected length {arg}, got {n}"]
        if op == "$contains":
            return [] if str(arg).lower() in json.dumps(actual).lower() else [f"{where}: does not contain {arg!r}"]
        if op == "$any":
            return []
        if op == "$excludes":  # no element of a list matches ``arg`` (subset matching)
            items = actual if isinstance(actual, list) else [actual]
            hits = [i for i, item in enumerate(items) if not match(arg, item)]
            return [f"{where}: expected no element matching {json.dumps(arg)}, found one at {hits[0]}"] if hits else []
        return [f"{where}: unknown matcher {op}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {type(actual).__name__}"]
        out = []
        for k, v in expected.items():
            if k not in actual:
                out.append(f"{where}.{k}: missing")
            else:
                out += match(v, actual[k], f"{where}.{k}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected a list of {len(expected)}, got {json.dumps(actual)[:120]}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in match(e, a, f"{where}[{i}]")]
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and not isinstance(expected, bool):
        return [] if math.isclose(expected, actual, rel_tol=1e-6, abs_tol=1e-9) else [f"{where}: expected {expected}, got {actual}"]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def run_case(env: Environment, case: Case, coverage: dict[str, dict[str, bool]]) -> CaseResult:
    result = CaseResult(name=case.name, passed=True)
    saved: dict[str, Any] = {}
    with env.episode(check_outputs=True) as ep:
        for i, step in enumerate(case.steps):
            label = f"step {i + 1} ({step.call})"
            try:
                args = _resolve(step.args, saved)
            except UnresolvedReference as exc:
                result.failures.append(f"{label}: {exc}")
                break
            spec = env.manifest.tool(step.call)
            writes = spec is not None and not spec.read_only
            before = ep.state_hash() if step.expect_unchanged or writes else None
            res = ep.call(step.call, args)
            problems: list[str] = []
            if res.ok != step.expect.ok:
                problems.append(f"expected {'success' if step.expect.ok else 'an error'}, got "
                                + (f"output {res.text[:200]}" if res.ok else f"error [{res.error_kind}] {res.error}"))
            elif res.ok:
                if step.expect.output is not None:
                    problems += match(step.expect.output, res.output)
            else:
                if step.expect.error_contains and step.expect.error_contains.lower() not in (res.error or "").lower():
                    problems.append(f"error {res.error!r} does not contain {step.expect.error_contains!r}")
                if step.expect.error_kind and step.expect.error_kind != res.error_kind:
                    problems.append(f"error kind {res.error_kind!r}, expected {step.expect.error_kind!r}")
            for check in step.expect_state:
                problems += check_state(ep, check)
            if step.expect_unchanged and ep.state_hash() != before:
                problems.append("state changed but the step expects it unchanged")
            elif writes and res.ok and not step.expect_unchanged and ep.state_hash() == before:
                # a write that cannot do what it says must refuse (a domain error), not report success: an agent
                # told "done" learns nothing, and a verifier cannot tell the call from doing nothing
                problems.append(f"{step.call} writes, reported success and changed nothing (refuse with a domain "
                                "error, or mark the step expect_unchanged if a no-op success is intended)")
            result.step_hashes.append(ep.state_hash())
            result.outputs.append(res.text)
            if res.ok and step.save:
                saved[step.save] = res.output
            if problems:
                result.failures += [f"{label}: {p}" for p in problems]
            elif step.call in coverage:
                coverage[step.call]["success" if step.expect.ok else "error"] = True
    result.passed = not result.failures
    return result


def run_suite(env: Environment, suite: TestSuite | None = None) -> SuiteReport:
    if suite is None:
        if not env.manifest.tests:
            raise FileNotFoundError(f"{env.name} declares no tests file")
        suite = load_suite(env.package_dir / env.manifest.tests)
    coverage = {name: {"success": False, "error": False} for name in env.tools}
    cases = [run_case(env, case, coverage) for case in suite.cases]
    return SuiteReport(cases=cases, coverage=coverage)
