"""The deterministic skeleton generator: an ``ApiSpec`` in, a complete environment package out.

``generate_package(spec, seed=0)`` returns the package's files (env.json, schema.sql, seed.json,
tools.py, tests.json) as text, identical for the same (spec, seed); the package passes the sandboxed
validation (``envs/validate.py``). The Code agent starts from it and lets a model add business rules,
richer seed data and errors. ``generate_tests`` (the Test agent's offline tier) works from the spec, the
tool specs and the seed rows alone. ``write_package`` writes whole files atomically into a workspace.

The parts: ``skeleton_plan`` (conventions, feasibility), ``skeleton_schema`` (DDL, JSON Schemas,
manifest), ``skeleton_seed`` (rows), ``skeleton_code`` (tools.py), ``skeleton_tests`` (tests.json).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath

from envfactory.envs.validation.quality import quality_problems, reference_depth
from envfactory.envs.skeleton.codegen import render_tools
from envfactory.envs.skeleton.plan import SkeletonError, check_generable
from envfactory.envs.skeleton.schema import build_manifest, render_schema_sql
from envfactory.envs.skeleton.seed import generate_seed
from envfactory.envs.skeleton.testgen import generate_tests
from envfactory.envs.skeleton.spec import ApiSpec
from envfactory.envs.validation.testcases import TestSuite

__all__ = ["PACKAGE_FILES", "SkeletonError", "generate_package", "generate_tests", "quality_gaps", "write_package"]

PACKAGE_FILES = ("env.json", "schema.sql", "seed.json", "tools.py", "tests.json")


def _json(value) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False) + "\n"


def generate_package(spec: ApiSpec, *, seed: int = 0) -> dict[str, str]:
    """File name -> text of a package that implements ``spec``. Raises ``SkeletonError`` (a ValueError
    naming every problem) when the spec cannot be generated."""
    if isinstance(spec, dict):
        spec = ApiSpec.model_validate(spec)
    plans = check_generable(spec)
    manifest, checked = build_manifest(spec, plans)
    rows = generate_seed(spec, seed, checked.clock)
    tests = generate_tests(spec, checked, rows)
    return {
        "env.json": _json(manifest),
        "schema.sql": render_schema_sql(spec),
        "seed.json": _json(rows),
        "tools.py": render_tools(spec, plans),
        "tests.json": _json(tests),
    }


def quality_gaps(spec: ApiSpec, files: dict[str, str]) -> list[str]:
    """Which parts of the catalog quality bar (``envs/quality.py``) a generated package misses, read from
    its files without running its code; empty when it meets the bar. A gap here comes from the spec
    (too few operations, rows or references), so the message says what the spec lacks."""
    min_tools, min_rows, min_depth = quality_problems.__defaults__
    tools = json.loads(files["env.json"])["tools"]
    reads = sum(t["read_only"] for t in tools)
    rows = {t: len(r) for t, r in json.loads(files["seed.json"]).items()}
    gaps = []
    if len(tools) < min_tools:
        gaps.append(f"{len(tools)} tools, fewer than {min_tools}: the spec needs more operations")
    if reads < 2 or len(tools) - reads < 2:
        gaps.append(f"needs at least 2 read and 2 write tools (the spec gives {reads} get/list and "
                    f"{len(tools) - reads} create/update/delete/transition operations)")
    if max(rows.values(), default=0) < min_rows:
        gaps.append(f"largest table has {max(rows.values(), default=0)} rows, fewer than {min_rows}: raise seed_rows")
    if not any(f.references for e in spec.entities for f in e.fields):
        gaps.append("no foreign keys between tables: the spec has no field with 'references'")
    depth = reference_depth(TestSuite.model_validate(json.loads(files["tests.json"])))
    if depth < min_depth:
        gaps.append(f"longest dependent call chain in the tests is {depth}, below {min_depth}: the spec's operations "
                    "do not let one entity be created, read and changed in sequence")
    return gaps


def _safe_relative(name: str) -> PurePosixPath:
    rel = PurePosixPath(name.replace("\\", "/"))
    if not name or rel.is_absolute() or name.startswith(("/", "\\")) or ".." in rel.parts or \
            any(":" in part for part in rel.parts) or str(rel) in (".", ""):
        raise ValueError(f"refusing to write {name!r}: package files must stay inside the package directory")
    return rel


def write_package(files: dict[str, str], directory: Path | str) -> list[Path]:
    """Write each file whole (a temporary file renamed into place), so a reader never sees half a file.
    Every name is checked before anything is written; a name that escapes ``directory`` is refused."""
    directory = Path(directory)
    rels = {name: _safe_relative(name) for name in files}
    root = directory.resolve() if directory.exists() else directory.absolute()
    for name, rel in rels.items():  # symlinks inside the directory must not lead out of it either
        target = (root / rel).resolve()
        if root != target and root not in target.parents:
            raise ValueError(f"refusing to write {name!r}: it resolves outside {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rel in rels.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(files[name])
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written
