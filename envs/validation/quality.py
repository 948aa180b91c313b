"""The quality bar a bundled environment must meet (checked by tests and `envs validate --strict`)."""
from __future__ import annotations

from envfactory.envs.validation.contamination import benchmark_overlap, describe_overlap
from envfactory.envs.runtime.environment import Environment
from envfactory.envs.validation.testcases import TestSuite, load_suite


def reference_depth(suite: TestSuite) -> int:
    """Longest chain of calls in one test case where each call uses an earlier call's output."""
    best = 0
    for case in suite.cases:
        depth_of_saved: dict[str, int] = {}
        for step in case.steps:
            refs = _refs(step.args)
            depth = 1 + max((depth_of_saved.get(r, 0) for r in refs), default=0)
            best = max(best, depth)
            if step.save:
                depth_of_saved[step.save] = depth
    return best


def _refs(value) -> set[str]:
    if isinstance(value, str) and value.startswith("$") and not value.startswith("$$"):
        return {value[1:].split(".", 1)[0]}
    if isinstance(value, dict):
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    return set()


def quality_problems(env: Environment, min_tools: int = 8, min_rows: int = 50, min_depth: int = 4) -> list[str]:
    problems = []
    tools = env.tool_specs
    reads = sum(t.read_only for t in tools)
    if len(tools) < min_tools:
        problems.append(f"{len(tools)} tools, fewer than {min_tools}")
    if reads < 2 or len(tools) - reads < 2:
        problems.append(f"needs at least 2 read and 2 write tools (has {reads} read, {len(tools) - reads} write)")
    conn = env._scratch(env.initial_state)
    try:
        counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in env.tables}
        fks = sum(len(conn.execute(f'PRAGMA foreign_key_list("{t}")').fetchall()) for t in env.tables)
    finally:
        conn.close()
    if max(counts.values(), default=0) < min_rows:
        problems.append(f"largest table has {max(counts.values(), default=0)} rows, fewer than {min_rows}")
    if fks == 0:
        problems.append("no foreign keys between tables")
    if env.manifest.tests:
        depth = reference_depth(load_suite(env.package_dir / env.manifest.tests))
        if depth < min_depth:
            problems.append(f"longest dependent call chain in the tests is {depth}, below {min_depth}")
    if not env.manifest.provenance:
        problems.append("no provenance")
    overlap = benchmark_overlap(t.name for t in tools)
    if overlap:
        problems.append(f"tools named like public evaluation benchmarks' ({describe_overlap(overlap)}): rename them")
    return problems
