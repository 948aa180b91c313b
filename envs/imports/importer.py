"""``envfactory envs import``: turn Python source holding a stateful tool class into a package.

Introspection imports the untrusted source, so it runs in the sandbox. The tools are what the
source serves: the ``@mcp.tool()`` functions of an MCP server file (names, docstrings and checks
as written), else the class's public methods. Each tool's JSON Schema comes from the signature's
type hints (pydantic), per-parameter descriptions from the Google-style ``Args:`` section of its
docstring (the class method's when the function has none), the output schema from the return
annotation. The sandbox then explores every tool on the initial state (``explore``): reads and
writes are told apart by their effect, and the calls become the package's tests.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import shutil
import sys
import typing
from pathlib import Path
from typing import Any

from envfactory.envs.imports.source import HOOKS as SKIP_METHODS, is_tool_method as _is_tool_method

_LITERAL_KEYWORDS = {"default", "enum", "const", "examples"}
HTTP_CLIENTS = ("requests", "httpx", "urllib3", "aiohttp")  # imported before the sandbox's guard (see child)
RESULT_FILE = "introspection.json"


@dataclasses.dataclass
class ImportReport:
    package: Path
    name: str
    class_name: str
    tools: list[str]
    read_only: list[str]
    missing_descriptions: list[str]     # "tool.parameter" described from its name, not the docstring
    undocumented_tools: list[str]       # no docstring summary: the description was made from the name
    untyped_outputs: list[str]          # no return annotation: permissive output schema
    untested_read_tools: list[str]      # kept for 0.1 callers: read tools without a success case
    reclassified: list[str]             # named like a read but changed the state: annotated as a write
    skipped_methods: dict[str, str]     # public methods that cannot be tools, and why
    tests_written: int
    warnings: list[str] = dataclasses.field(default_factory=list)
    source: str = "class"               # "class": the class's methods; "mcp": the module's @mcp.tool() functions
    uncovered: list[str] = dataclasses.field(default_factory=list)  # "tool (success|error path)" no test reaches
    scenario_fields: list[str] = dataclasses.field(default_factory=list)  # required fields of the scenario model

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "package": str(self.package)}


# ---------------------------------------------------------------- docstrings and schemas

_ARG_LINE = re.compile(r"^\s{2,}(\*{0,2}\w+)\s*(\([^)]*\))?\s*(\[[^\]]*\])?\s*:\s*(.*)$")


def _docstring_args(doc: str) -> tuple[str, dict[str, str]]:
    """Summary and per-argument descriptions from a Google-style docstring
    (``name (type) [Optional]: text`` lines, as the EnvFactory wrappers write them)."""
    doc = inspect.cleandoc(doc or "")
    summary = doc.split("\n\n")[0].replace("\n", " ").strip()
    if re.match(r"^(Args|Arguments|Parameters|Returns|Raises):", summary):
        summary = ""
    args: dict[str, str] = {}
    match = re.search(r"^(Args|Arguments|Parameters):\s*\n(.*?)(?:^\S|\Z)", doc, re.S | re.M)
    if match:
        current = None
        for line in match.group(2).splitlines():
            m = _ARG_LINE.match(line)
            if m and (not current or len(line) - len(line.lstrip()) <= 8):
                current = m.group(1).lstrip("*")
                args[current] = m.group(4).strip()
            elif current and line.strip():
                args[current] += " " + line.strip()
    return summary, args


def _strip_titles(node: Any) -> Any:
    """Drop pydantic's generated titles (noise for the agent); keep literal values intact."""
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "patternProperties"):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = value if key in _LITERAL_KEYWORDS else _strip_titles(value)
    return out


def _output_schema(annotation: Any) -> dict[str, Any]:
    from pydantic import TypeAdapter
    if annotation in (inspect.Parameter.empty, Any):
        return {}
    if annotation is None or annotation is type(None):
        return {"type": "null"}
    try:
        return _strip_titles(TypeAdapter(annotation).json_schema(mode="serialization"))
    except Exception:  # a type pydantic cannot describe: as good as undeclared
        return {}


def _input_schema(fn, bound: bool) -> dict[str, Any]:
    import pydantic

    from envfactory.envs.imports.arguments import callable_parameters
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: treat those parameters as untyped
        hints = {}
    params = [p for p in callable_parameters(fn, bound) if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    fields = {p.name: (hints.get(p.name, Any), ... if p.default is p.empty else p.default) for p in params}
    model = pydantic.create_model(f"{fn.__name__}_arguments",
                                  __config__=pydantic.ConfigDict(arbitrary_types_allowed=True), **fields)
    return _strip_titles(model.model_json_schema()), params


def _source_line(fn) -> int:
    return getattr(getattr(inspect.unwrap(fn), "__code__", None), "co_firstlineno", 0)


def _raw_function(cls: type, name: str) -> tuple[Any, bool]:
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, (staticmethod, classmethod)):
        return raw.__func__, isinstance(raw, staticmethod)
    return raw, False


def _first_word(name: str) -> str:
    return re.split(r"_|(?<=[a-z0-9])(?=[A-Z])", name)[0].lower()


def introspect_tools(functions: list[tuple[str, Any, bool]], fallback_docs: dict[str, str] | None = None) -> dict[str, Any]:
    """Tool specs (as dicts) for ``(name, function, bound)`` triples, in source order."""
    from envfactory.envs.imports.explore import guess_read_only
    from envfactory.envs.runtime.manifest import TOOL_NAME_PATTERN
    tools, missing, undocumented, untyped, skipped = [], [], [], [], {}
    for name, fn, bound in sorted(functions, key=lambda t: (_source_line(t[1]), t[0])):
        if not re.match(TOOL_NAME_PATTERN, name):
            skipped[name] = "tool names start with a letter and hold letters, digits and _ (2 to 64 characters)"
            continue
        try:
            schema, params = _input_schema(fn, bound)
        except Exception as exc:
            skipped[name] = f"its parameters have no JSON Schema ({type(exc).__name__}: {exc})"
            continue
        summary, arg_docs = _docstring_args(fn.__doc__ or "")
        fb_summary, fb_args = _docstring_args((fallback_docs or {}).get(name, ""))
        summary = summary or fb_summary
        props = schema.setdefault("properties", {})
        for param in params:
            desc = arg_docs.get(param.name) or fb_args.get(param.name)
            if not desc:
                missing.append(f"{name}.{param.name}")
                desc = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", param.name).replace("_", " ").lower()
            props[param.name]["description"] = desc
        schema.update(type="object", required=schema.get("required", []), additionalProperties=False)
        if not summary:
            undocumented.append(name)
            summary = f"{name.replace('_', ' ')} (no docstring)"
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        output = _output_schema(hints.get("return", inspect.signature(fn).return_annotation))
        if not output:
            untyped.append(name)
            output = {"description": "undeclared return type"}
        tools.append({"name": name, "description": summary if len(summary) >= 10 else f"{summary} (tool {name})",
                      "read_only": guess_read_only(name), "input_schema": schema, "output_schema": output})
    return {"tools": tools, "missing_descriptions": missing, "undocumented_tools": undocumented,
            "untyped_outputs": untyped, "skipped_methods": skipped}


def introspect_class(cls: type) -> dict[str, Any]:
    """Tool specs for the public methods of ``cls``, in source order."""
    from envfactory.envs.imports.source import class_tool_names
    return introspect_tools([(n, *_raw_function(cls, n)) for n in class_tool_names(cls)])


# ---------------------------------------------------------------- inside the sandbox

def _pick_class(module, class_name: str | None) -> type:
    classes = {n: c for n, c in vars(module).items() if inspect.isclass(c) and c.__module__ == module.__name__}
    if class_name:
        if class_name not in classes:
            raise ValueError(f"no class {class_name!r} in the file (found: {', '.join(sorted(classes)) or 'none'})")
        return classes[class_name]
    candidates = {n: c for n, c in classes.items()
                  if any(not m.startswith("_") and m not in SKIP_METHODS and _is_tool_method(c, m) for m in dir(c))
                  and not issubclass(c, BaseException) and not hasattr(c, "model_fields")}
    if len(candidates) > 1:  # an MCP server file names its class through the global its tools call
        from envfactory.envs.imports.source import mcp_tool_names
        used = {n for f in mcp_tool_names(module) for n in vars(module)[f].__code__.co_names}
        held = {n: c for n, c in candidates.items() if any(isinstance(vars(module).get(g), c) for g in used)}
        candidates = held if len(held) == 1 else candidates
    if len(candidates) != 1:
        raise ValueError(f"cannot tell which class holds the tools (candidates: {', '.join(sorted(candidates)) or 'none'}); "
                         "pass --class")
    return next(iter(candidates.values()))


def scenario_model_fields(module, cls: type) -> tuple[str | None, list[str], dict | None]:
    """The pydantic scenario model the load hook validates with: its name, required fields and schema."""
    hook = next((getattr(cls, h) for h in ("load_scenario", "_load_scenario") if callable(getattr(cls, h, None))), None)
    used = set(getattr(getattr(hook, "__code__", None), "co_names", ()))
    models = [c for n, c in vars(module).items() if inspect.isclass(c) and hasattr(c, "model_fields")
              and c.__module__ == module.__name__]
    chosen = [c for c in models if c.__name__ in used] or [c for c in models if c.__name__.lower().endswith("scenario")]
    if not chosen:
        return None, [], None
    model = chosen[0]
    required = [n for n, f in model.model_fields.items() if f.is_required()]
    try:
        schema = model.model_json_schema()
    except Exception:
        schema = None
    return model.__name__, required, schema


def _load_source(path: Path, root: Path | None, dotted: str | None):
    from envfactory.envs.imports.source import exec_class_file, import_from_root
    if root is not None and dotted:
        return import_from_root(root, dotted)
    return exec_class_file(path, "envfactory_import_target")


def child_introspect(path: Path, class_name: str | None, scenario: str | None, root: str | None = None,
                     dotted: str | None = None, source: str = "auto", explore: bool = True) -> dict[str, Any]:
    """Runs inside the sandbox: import the source, describe its tools, explore them; the result is
    written to ``introspection.json`` in the workspace (a pipe holds only so much)."""
    from envfactory.envs.imports.explore import explore_tools
    from envfactory.envs.imports.pyclass import LOAD_HOOKS, load_state
    from envfactory.envs.imports.source import instance_global, mcp_tool_names
    module = _load_source(path, Path(root) if root else None, dotted)
    cls = _pick_class(module, class_name)
    wrappers = mcp_tool_names(module)
    holder = instance_global(module, cls, wrappers) if wrappers else None
    if source == "mcp" and not (wrappers and holder):
        raise ValueError("no @mcp.tool() functions calling a module-global instance of "
                         f"{cls.__name__} in {path.name}; import the class with --source class")
    use_mcp = source == "mcp" or (source == "auto" and bool(wrappers and holder))
    class_docs = {n: getattr(cls, n).__doc__ or "" for n in dir(cls) if _is_tool_method(cls, n)}
    if use_mcp:
        info = introspect_tools([(n, vars(module)[n], True) for n in wrappers], class_docs)
    else:
        info = introspect_class(cls)
    if not info["tools"]:
        raise ValueError(f"{'the MCP server' if use_mcp else 'class ' + cls.__name__} has no functions that can be tools "
                         f"(skipped: {info['skipped_methods'] or 'none'})")
    warnings: list[str] = []
    model_name, required, model_schema = scenario_model_fields(module, cls)
    given = json.loads(Path(scenario).read_text(encoding="utf-8")) if scenario else None
    has_hook = any(callable(getattr(cls, h, None)) for h in LOAD_HOOKS)
    initial, mode = (given if given is not None else {}), "scenario"
    if given is None and not has_hook:
        mode = "constructor"  # the class as constructed, with its sets, objects and private state
    elif given is None:
        try:
            load_state(cls(), {})
        except Exception as exc:  # the hook insists on a full scenario: keep the constructed state
            mode = "constructor"
            need = f"; {model_name} requires {', '.join(required)}" if required else ""
            first = (str(exc).splitlines() or [""])[0][:160]
            warnings.append(f"loading an empty scenario failed ({type(exc).__name__}: {first}){need}; the "
                            "initial state is the freshly constructed instance: pass --scenario FILE with those fields")
    else:
        load_state(cls(), given)  # a scenario the class refuses is the user's to fix: say why now
    manifest = {"name": "import_probe", "version": "0.0.0", "domain": "imported", "description": "introspection probe only",
                "backend": "pyclass", "class_name": cls.__name__, "tools": info["tools"],
                "pyclass": {"instance_global": holder if use_mcp else None, "initial": mode}}
    explored = explore_tools(manifest, module, cls, initial, enabled=explore)
    payload = {**info, **explored, "class_name": cls.__name__, "doc": inspect.getdoc(cls) or "", "mode": mode,
               "instance_global": holder if use_mcp else None, "source": "mcp" if use_mcp else "class",
               "warnings": warnings + explored.get("warnings", []), "scenario_model": model_name,
               "scenario_fields": required, "scenario_schema": model_schema}
    Path(RESULT_FILE).write_text(json.dumps(payload, default=str), encoding="utf-8")
    return {"result_file": RESULT_FILE}


# ---------------------------------------------------------------- the source tree

def _local_imports(file: Path, root: Path, dotted: str) -> set[Path]:
    """Files under ``root`` that ``file`` (module ``dotted``) imports."""
    from envfactory.envs.runtime.pyparse import parse_python
    try:
        tree = parse_python(file.read_text(encoding="utf-8"), filename=str(file))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return set()
    package = dotted if file.name == "__init__.py" else dotted.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[:len(parts) - node.level + 1] if node.level > 1 else parts
                base = ".".join(p for p in [*parts, base] if p)
            names += [base] + [f"{base}.{a.name}" if base else a.name for a in node.names]
    found = set()
    for name in filter(None, names):
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            base = root.joinpath(*parts[:i])
            for candidate in (base / "__init__.py", base.with_suffix(".py")):
                if candidate.is_file():
                    found.add(candidate.resolve())
    return found


def source_layout(path: Path, import_root: Path | None = None) -> tuple[Path | None, str | None, list[Path]]:
    """Where the source imports from: (import root, dotted module name, files under the root it
    needs); the root is None for a file that imports nothing of its own."""
    if import_root is None:
        top = path.parent
        while (top / "__init__.py").is_file():
            top = top.parent
        root = top if top != path.parent else None
        if root is None and _local_imports(path, path.parent, path.stem) - {path.resolve()}:
            root = path.parent  # a flat folder whose files import each other
    else:
        root = import_root.resolve()
        if not path.resolve().is_relative_to(root):
            raise ValueError(f"{path} is not inside the import root {root}")
    if root is None:
        return None, None, [path]
    rel = path.resolve().relative_to(root.resolve()).with_suffix("")
    dotted = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    files, todo = {path.resolve()}, [(path.resolve(), dotted)]
    while todo:  # what the module imports from its own tree, transitively, with the packages' __init__ files
        file, name = todo.pop()
        for dep in _local_imports(file, root, name):
            if dep not in files:
                files.add(dep)
                dep_rel = dep.relative_to(root.resolve()).with_suffix("")
                todo.append((dep, ".".join(dep_rel.parts[:-1] if dep_rel.name == "__init__" else dep_rel.parts)))
    for file in list(files):
        folder = file.parent
        while folder != root.resolve() and (folder / "__init__.py").is_file():
            files.add((folder / "__init__.py").resolve())
            folder = folder.parent
    return root, dotted, sorted(files)


def http_clients(files: list[Path]) -> list[str]:
    """HTTP client libraries the source imports (the sandbox imports them before its guard)."""
    from envfactory.envs.runtime.pyparse import parse_python
    found = set()
    for file in files:
        try:
            tree = parse_python(file.read_text(encoding="utf-8"), filename=str(file))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found |= {n.split(".")[0] for n in names if n.split(".")[0] in HTTP_CLIENTS}
    return sorted(found)


# ---------------------------------------------------------------- the package

def _env_name(class_name: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()).strip("_")
    name = re.sub(r"_?(api|server)$", "", name) or name
    return name if re.match(r"^[a-z][a-z0-9_]{1,63}$", name) else f"imported_{name}"[:64]


def _check_scenario(scenario: str | Path | dict | None) -> dict | Path | None:
    """A scenario file's path after checking it holds a JSON object (dicts pass as they are)."""
    if scenario is None or isinstance(scenario, dict):
        return scenario
    path = Path(scenario)
    if not path.is_file():
        raise FileNotFoundError(f"scenario file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"scenario file {path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"scenario file {path} is not UTF-8 text (byte {exc.start})") from None
    if not isinstance(data, dict):
        raise ValueError(f"scenario file {path} must hold a JSON object (the state to load), not {type(data).__name__}")
    return path


def _introspect_in_sandbox(path: Path, root: Path | None, dotted: str | None, files: list[Path], class_name: str | None,
                           scenario: dict | Path | None, source: str, explore: bool) -> dict[str, Any]:
    from envfactory.envs.sandbox.runner import SandboxLimits, new_workspace, run_sandboxed
    workspace = new_workspace("ef-import-")
    try:
        if root is None:
            target, ws_root = workspace / "src" / path.name, None
            target.parent.mkdir()
            shutil.copy(path, target)
        else:
            ws_root = workspace / "src"
            for file in files:
                dest = ws_root / file.relative_to(root.resolve())
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(file, dest)
            target = ws_root / path.resolve().relative_to(root.resolve())
        scenario_file = None
        if scenario is not None:
            scenario_file = workspace / "scenario.json"
            if isinstance(scenario, dict):
                scenario_file.write_text(json.dumps(scenario), encoding="utf-8")
            else:
                shutil.copy(scenario, scenario_file)
        request = {"task": "introspect", "path": str(target), "class_name": class_name,
                   "scenario": str(scenario_file) if scenario_file else None, "root": str(ws_root) if ws_root else None,
                   "dotted": dotted, "source": source, "explore": explore, "preimport": http_clients(files)}
        result = run_sandboxed(request, workspace, SandboxLimits(wall_seconds=300, cpu_seconds=240))
        payload = result.payload or {}
        if result.status == "ok" and "result_file" in payload:
            payload = json.loads((workspace / payload["result_file"]).read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    if result.status != "ok" or "tools" not in payload:
        reason = payload.get("error") or result.detail or "no result"
        if reason.startswith("ValueError: "):  # our own account of what is wrong with the source or scenario
            raise RuntimeError(f"cannot import {path.name}: {reason[len('ValueError: '):]}")
        raise RuntimeError(f"importing {path.name} failed in the sandbox ({result.status}): {reason}")
    return payload


def _relax_across_processes(package: Path) -> int:
    """Run the generated tests in a fresh sandbox process and loosen what came out different there:
    values that depend on the process (``hash()`` of a string, the order of a set of strings) are
    not the class's behaviour to pin down. Returns how many steps were loosened."""
    from envfactory.envs.sandbox.runner import SandboxLimits, new_workspace, run_sandboxed
    workspace = new_workspace("ef-import-check-")
    try:  # the validator's own task, in a fresh contained child (not through validation: it imports us)
        target = workspace / "package"
        shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "verified.json"))
        result = run_sandboxed({"task": "validate", "package": str(target),
                                "preimport": http_clients(sorted(target.rglob("*.py")))},
                               workspace, SandboxLimits(wall_seconds=300, cpu_seconds=240))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    failures = (result.payload or {}).get("failures") or []
    if not failures:
        return 0
    suite = json.loads((package / "tests.json").read_text(encoding="utf-8"))
    relaxed = 0
    for case in list(suite["cases"]):
        for failure in [f for f in failures if f.startswith(case["name"] + ": step ")]:
            match = re.match(r"step (\d+) \(([^)]*)\): (.*)$", failure[len(case["name"]) + 2:], re.S)
            if not match or int(match.group(1)) > len(case["steps"]):
                continue
            step, problem = case["steps"][int(match.group(1)) - 1], match.group(3)
            if problem.startswith("expected success") or problem.startswith("expected an error"):
                suite["cases"].remove(case)  # the outcome itself differs: not a test of the class
                suite.setdefault("uncovered", {})[f"{step['call']} ({'success' if step['expect']['ok'] else 'error'} path)"] = \
                    "its outcome differed between two processes"
                relaxed += 1
                break
            if problem.startswith("output"):
                step["expect"]["output"] = {"$any": True}
            elif problem.startswith("state."):
                step.pop("expect_state", None)
            elif problem.startswith("state changed"):
                step.pop("expect_unchanged", None)
            elif problem.startswith("error "):
                step["expect"].pop("error_contains", None)
            relaxed += 1
    if not suite["cases"]:
        suite["cases"] = [{"name": "unknown tools are refused", "steps": [
            {"call": "no_such_tool", "args": {}, "expect": {"ok": False, "error_kind": "unknown_tool"}}]}]
    (package / "tests.json").write_text(json.dumps(suite, indent=1, ensure_ascii=False), encoding="utf-8")
    return relaxed


def import_class(path: str | Path, out_dir: str | Path | None = None, class_name: str | None = None,
                 name: str | None = None, scenario: str | Path | dict | None = None, *,
                 import_root: str | Path | None = None, source: str = "auto", explore: bool = True) -> ImportReport:
    """Write a pyclass package for the tool class in ``path``; the report says what needs attention."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix != ".py":
        raise ValueError(f"{path.name} is not a Python file")
    if name is not None and not re.match(r"^[a-z][a-z0-9_]{1,63}$", name):
        raise ValueError(f"environment name {name!r} must be lower_snake_case, 2 to 64 characters")
    if source not in ("auto", "class", "mcp"):
        raise ValueError(f"source must be auto, class or mcp, not {source!r}")
    if import_root is not None and not Path(import_root).is_dir():
        raise FileNotFoundError(f"import root {import_root} is not a folder")
    scenario = _check_scenario(scenario)
    root, dotted, files = source_layout(path, Path(import_root) if import_root else None)
    payload = _introspect_in_sandbox(path, root, dotted, files, class_name, scenario, source, explore)
    env_name = name or _env_name(payload["class_name"])
    out = Path(out_dir) if out_dir else Path("envs_imported") / env_name
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "src", ignore_errors=True)
    pyclass: dict[str, Any] = {"initial": payload["mode"]}
    if root is None:
        shutil.copy(path, out / "tools.py")
        tools_module = "tools.py"
    else:
        (out / "tools.py").unlink(missing_ok=True)
        for file in files:
            dest = out / "src" / file.relative_to(root.resolve())
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, dest)
        tools_module = (Path("src") / path.resolve().relative_to(root.resolve())).as_posix()
        pyclass.update(import_root="src", module=dotted)
    if payload.get("instance_global"):
        pyclass["instance_global"] = payload["instance_global"]
    if isinstance(scenario, Path):
        shutil.copy(scenario, out / "scenario.json")  # as given, whatever its size
    else:
        (out / "scenario.json").write_text(json.dumps(scenario or {}, indent=1, ensure_ascii=False), encoding="utf-8")
    if payload.get("scenario_schema"):
        (out / "scenario.schema.json").write_text(json.dumps(payload["scenario_schema"], indent=1), encoding="utf-8")
    cases = payload["cases"] or [{"name": "unknown tools are refused", "steps": [
        {"call": "no_such_tool", "args": {}, "expect": {"ok": False, "error_kind": "unknown_tool"}}]}]
    need = f"; {payload['scenario_model']} requires {', '.join(payload['scenario_fields'])}: pass --scenario FILE" \
        if payload.get("scenario_fields") and payload.get("mode") == "constructor" else ""
    why = {"success": "no call with arguments drawn from the state, the schema or the descriptions succeeded, on the "
                      "initial state or after another tool's write" + need,
           "error": "every call tried succeeded"}
    uncovered = {u: why["success" if "success" in u else "error"] for u in payload.get("uncovered", [])}
    (out / "tests.json").write_text(json.dumps({"cases": cases, "uncovered": uncovered}, indent=1, ensure_ascii=False),
                                    encoding="utf-8")
    description = payload["doc"].split("\n\n")[0].replace("\n", " ") or f"Tools of {payload['class_name']}, imported."
    if len(description) < 20:
        description = f"{description} (imported from {path.name})"
    manifest = {"name": env_name, "version": "1.0.0", "domain": "imported", "description": description,
                "provenance": [{"title": f"imported from {path.name}", "url": path.as_uri()}],
                "backend": "pyclass", "class_name": payload["class_name"], "seed": "scenario.json",
                "tools_module": tools_module, "tests": "tests.json", "pyclass": pyclass, "tools": payload["tools"]}
    (out / "env.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "verified.json").unlink(missing_ok=True)  # a re-import is new, unverified code
    if explore and payload["cases"]:
        relaxed = _relax_across_processes(out)
        if relaxed:
            payload["warnings"].append(f"{relaxed} expectation(s) relaxed: another process computed other values "
                                       "(hash() of text, the order of a set of text, object addresses)")
    tools = payload["tools"]
    return ImportReport(
        package=out, name=env_name, class_name=payload["class_name"], tools=[t["name"] for t in tools],
        read_only=[t["name"] for t in tools if t["read_only"]], missing_descriptions=payload["missing_descriptions"],
        undocumented_tools=payload["undocumented_tools"],
        untyped_outputs=[t for t in payload["untyped_outputs"] if t not in payload.get("inferred_outputs", [])],
        untested_read_tools=payload["untested_read_tools"], reclassified=payload["reclassified"],
        skipped_methods=payload["skipped_methods"], tests_written=len(payload["cases"]), warnings=payload["warnings"],
        source=payload["source"], uncovered=payload.get("uncovered", []), scenario_fields=payload.get("scenario_fields", []))


def import_class_file(path: str | Path, out_dir: str | Path | None = None, class_name: str | None = None,
                      name: str | None = None, scenario: str | Path | dict | None = None, **options) -> Path:
    """Write a pyclass package for the tool class in ``path`` and return its folder."""
    return import_class(path, out_dir, class_name, name, scenario, **options).package


def run_import_command(args) -> int:
    try:
        report = import_class(args.path, args.out, args.class_name, args.name, args.scenario,
                              import_root=getattr(args, "import_root", None), source=getattr(args, "source", "auto"),
                              explore=not getattr(args, "no_explore", False))
    except (OSError, ValueError, RuntimeError) as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        else:
            print(f"import failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, **report.to_dict()}, indent=2))
        return 0
    out = report.package
    what = "its @mcp.tool() functions" if report.source == "mcp" else "its methods"
    print(f"imported {report.class_name} as {report.name} into {out}: {len(report.tools)} tools ({what})")
    for tool in report.tools:
        print(f"  {tool} ({'read' if tool in report.read_only else 'write'})")
    notes = [("parameters described from their name (no Args: entry in the docstring)", report.missing_descriptions),
             ("tools without a docstring", report.undocumented_tools),
             ("tools without a return annotation (permissive output schema)", report.untyped_outputs),
             ("tools named like reads that changed the state, annotated as writes", report.reclassified),
             ("tool paths no generated test reaches", report.uncovered),
             ("methods skipped", [f"{m}: {why}" for m, why in report.skipped_methods.items()])]
    for label, items in notes:
        if items:
            print(f"  warning: {label}: {', '.join(items)}")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    print(f"  wrote {report.tests_written} test case(s); check them, then run `envfactory envs validate {out}`")
    return 0
