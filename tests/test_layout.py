"""The architecture is visible in the folders and stays that way: no module imports one that
imports it back, each ``envs`` sub-package imports only what its docstring allows, every
sub-package says what it owns, and the README's tree lists exactly the sub-packages on disk."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["agents", "graphs", "prompts", "envs", "data", "cli", "bench"]

# envs sub-package -> the envs sub-packages it may import (besides itself), as their docstrings say
ENVS_ALLOWED = {
    "runtime": set(),
    "sandbox": {"runtime", "validation", "imports"},  # validation and imports: only the children
    "validation": {"runtime", "sandbox", "imports"},
    "imports": {"runtime", "sandbox"},
    "mcp": {"runtime"},
    "skeleton": {"runtime", "validation"},
    "chains": {"runtime"},
}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            if "catalog" in path.parts:
                continue  # environment packages: data, not our modules
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods["envfactory." + ".".join(parts)] = path
    return mods


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """Every envfactory module ``path`` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
            out.update(subs if len(subs) == len(node.names) else [node.module, *subs])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in mods}


def test_no_module_imports_one_that_imports_it_back():
    mods = _modules()
    g = nx.DiGraph()
    for name, path in mods.items():
        g.add_node(name)
        g.add_edges_from((name, target) for target in _imports(path, mods) if target != name)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_the_cycle_check_sees_an_import_inside_a_function(tmp_path):
    mods = {"envfactory.a": tmp_path / "a.py", "envfactory.b": tmp_path / "b.py"}
    mods["envfactory.a"].write_text("def f():\n    from envfactory.b import g\n")
    assert _imports(mods["envfactory.a"], mods) == {"envfactory.b"}


@pytest.mark.parametrize("sub", sorted(ENVS_ALLOWED))
def test_envs_sub_packages_import_only_what_they_may(sub):
    mods = _modules()
    allowed = {f"envfactory.envs.{s}" for s in ENVS_ALLOWED[sub] | {sub}}
    bad = {}
    for name, path in mods.items():
        if not name.startswith(f"envfactory.envs.{sub}"):
            continue
        for target in _imports(path, mods):
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                bad.setdefault(name, set()).add(target)
    assert not bad, bad


def _sub_packages() -> list[str]:
    return sorted(str(p.parent.relative_to(ROOT)) for folder in FOLDERS for p in (ROOT / folder).rglob("__init__.py")
                  if "catalog" not in p.parts and p.parent != ROOT / folder)


def test_every_sub_package_says_what_it_owns():
    missing = [sub for sub in _sub_packages()
               if not (importlib.import_module("envfactory." + sub.replace("/", ".")).__doc__ or "").strip()]
    assert not missing, f"sub-packages without a docstring: {missing}"


def test_the_readme_tree_lists_exactly_the_sub_packages_on_disk():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tree = readme.split("## Architecture", 1)[1].split("```", 2)[1]
    listed, parent = set(), None
    for line in tree.splitlines():  # "envs/  ..." then "  runtime/  ..." under it
        m = re.match(r"^(\s*)([a-z_]+/)\s", line)
        if m and not m.group(1):
            parent = m.group(2)
            listed.add(parent)
        elif m:
            listed.add(parent + m.group(2))
    on_disk = {sub + "/" for sub in _sub_packages()} | {f + "/" for f in FOLDERS}
    data_folders = {"envs/catalog/", "notebooks/", "tests/", "docs/"}  # listed, but not packages of ours
    assert listed - data_folders == on_disk, sorted(listed ^ on_disk)
    assert all((ROOT / d).is_dir() for d in data_folders & listed)
