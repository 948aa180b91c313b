"""Running imported source: a class file, or a module inside its own package, and its tools.

A file is executed as a module minus any top-level server start-up (``mcp.run()``: it would
block). A module that imports sibling modules runs with its import root on ``sys.path`` under its
own dotted name, as Python would run it. MCP server files (``@mcp.tool()`` functions calling a
module-global instance of the class) serve those functions: their names, docstrings and checks
are what the source serves, and the instance is the state.
"""
from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.util
import inspect
import itertools
import sys
import threading
import types
from pathlib import Path
from typing import Any

from envfactory.envs.imports.determinism import make_deterministic
from envfactory.envs.runtime.pyparse import parse_python

_counter = itertools.count()
_import_lock = threading.RLock()  # sys.path and sys.modules change while a source loads
HOOKS = ("load_scenario", "save_scenario", "_load_scenario")


def _starts_a_server(node: ast.stmt) -> bool:
    """A top-level ``mcp.run()`` (the paper's files end with one): it would block the import.
    ``if __name__ == "__main__":`` blocks never run either (the module is not ``__main__``)."""
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "run")


class _NoServerLoader(importlib.abc.SourceLoader):
    """Loads a source file with its top-level ``*.run()`` statements left out."""

    def __init__(self, fullname: str, path: str):
        self.fullname, self.path = fullname, path

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_data(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def source_to_code(self, data, path, *, _optimize=-1):
        tree = parse_python(data.decode("utf-8"), filename=str(path))
        tree.body = [node for node in tree.body if not _starts_a_server(node)]
        return compile(tree, str(path), "exec", dont_inherit=True)


def exec_class_file(path: Path, module_name: str | None = None) -> types.ModuleType:
    """Execute a class file as a module, minus any top-level server start-up.

    The module is registered in ``sys.modules`` (pydantic, ``typing.get_type_hints`` and pickle
    look classes up there). Raises whatever the file raises (SyntaxError included).
    """
    module_name = module_name or f"envfactory_pyclass_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path, loader=_NoServerLoader(module_name, str(path)))
    module = importlib.util.module_from_spec(spec)
    with _import_lock:
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
    make_deterministic(module)
    return module


def import_from_root(root: Path, dotted: str) -> types.ModuleType:
    """Import ``dotted`` with ``root`` on the import path (sibling imports resolve as in the source
    tree). Modules already loaded under those names from another folder are replaced, so two
    imported packages with a ``models.py`` each get their own."""
    root = root.resolve()
    with _import_lock:
        owned = lambda m: getattr(m, "__file__", None) and Path(m.__file__).resolve().is_relative_to(root)
        names = {p.stem for p in root.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
        for name in [n for n, m in list(sys.modules.items()) if n.split(".")[0] in names]:
            if not owned(sys.modules[name]):
                del sys.modules[name]
        sys.path.insert(0, str(root))
        finder = _NoServerFinder(root)
        sys.meta_path.insert(0, finder)
        try:
            module = importlib.import_module(dotted)
        finally:
            sys.path.remove(str(root))
            sys.meta_path.remove(finder)
        for mod in [m for m in list(sys.modules.values()) if isinstance(m, types.ModuleType) and owned(m)]:
            make_deterministic(mod)
    return module


class _NoServerFinder(importlib.abc.MetaPathFinder):
    """Source files under the import root load without their top-level server start-up."""

    def __init__(self, root: Path):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        base = self.root.joinpath(*fullname.split("."))
        for candidate, package in ((base / "__init__.py", True), (base.with_suffix(".py"), False)):
            if candidate.is_file():
                return importlib.util.spec_from_file_location(
                    fullname, candidate, loader=_NoServerLoader(fullname, str(candidate)),
                    submodule_search_locations=[str(base)] if package else None)
        return None


# ---------------------------------------------------------------- what the source serves

def mcp_tool_functions(module: types.ModuleType) -> list[str]:
    """Names of the module's functions decorated ``@<server>.tool(...)`` (or ``@<server>.tool``),
    in source order."""
    try:
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    except (OSError, TypeError, SyntaxError, UnicodeDecodeError):
        return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(target, ast.Attribute) and target.attr == "tool":
                    names.append(node.name)
                    break
    return [n for n in names if inspect.isfunction(vars(module).get(n))]


def instance_global(module: types.ModuleType, cls: type, functions: list[str]) -> str | None:
    """The module global holding the instance of ``cls`` that the wrappers call (``api``)."""
    used = set()
    for name in functions:
        used |= set(vars(module)[name].__code__.co_names)
    found = [n for n, v in vars(module).items() if isinstance(v, cls) and n in used]
    return found[0] if len(found) == 1 else None


def is_tool_method(cls: type, name: str) -> bool:
    raw = inspect.getattr_static(cls, name, None)
    return inspect.isfunction(raw) or isinstance(raw, (staticmethod, classmethod))


def class_tool_names(cls: type) -> list[str]:
    return [n for n in dir(cls) if not n.startswith("_") and n not in HOOKS and is_tool_method(cls, n)]


def mcp_tool_names(module: types.ModuleType) -> list[str]:
    return [n for n in mcp_tool_functions(module) if n not in HOOKS]

