"""``envfactory envs import``: turn a Python file holding a stateful tool class into a package.

Introspection imports the untrusted file, so it runs in the sandbox. Each public method becomes a
tool: its JSON Schema comes from the signature's type hints (pydantic), per-parameter
descriptions from the Google-style ``Args:`` section of its docstring, the output schema from
the return annotation, and the read/write annotation from its name (overridable in env.json).
The sandbox also runs every read tool once on the initial state; the calls that succeed become
the package's starter tests.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import re
import shutil
import sys
import typing
from pathlib import Path
from typing import Any

SKIP_METHODS = {"load_scenario", "save_scenario", "_load_scenario"}
_LITERAL_KEYWORDS = {"default", "enum", "const", "examples"}


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
    untested_read_tools: list[str]      # no arguments found in the initial state, or the call failed
    reclassified: list[str]             # named like a read but changed the state: annotated as a write
    skipped_methods: dict[str, str]     # public methods that cannot be tools, and why
    tests_written: int
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "package": str(self.package)}


# ---------------------------------------------------------------- docstrings and schemas

def _docstring_args(doc: str) -> tuple[str, dict[str, str]]:
    """Summary and per-argument descriptions from a Google-style docstring."""
    doc = inspect.cleandoc(doc or "")
    summary = doc.split("\n\n")[0].replace("\n", " ").strip()
    if re.match(r"^(Args|Arguments|Parameters|Returns|Raises):", summary):
        summary = ""
    args: dict[str, str] = {}
    match = re.search(r"^(Args|Arguments|Parameters):\s*\n(.*?)(?:^\S|\Z)", doc, re.S | re.M)
    if match:
        current = None
        for line in match.group(2).splitlines():
            m = re.match(r"^\s{2,}(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", line)
            if m and (not current or len(line) - len(line.lstrip()) <= 8):
                current = m.group(1).lstrip("*")
                args[current] = m.group(3).strip()
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


def _is_tool_method(cls: type, name: str) -> bool:
    raw = inspect.getattr_static(cls, name, None)
    return inspect.isfunction(raw) or isinstance(raw, (staticmethod, classmethod))


def _source_line(cls: type, name: str) -> int:
    fn = inspect.unwrap(getattr(cls, name))
    return getattr(getattr(fn, "__code__", None), "co_firstlineno", 0)


def introspect_class(cls: type) -> dict[str, Any]:
    """Tool specs (as dicts) for the public methods of ``cls``, in source order."""
    from envfactory.envs.runtime.manifest import TOOL_NAME_PATTERN
    from envfactory.envs.imports.pyclass import READ_PREFIXES, arguments_model, method_parameters
    tools, missing, undocumented, untyped, skipped = [], [], [], [], {}
    names = [n for n in dir(cls) if not n.startswith("_") and n not in SKIP_METHODS and _is_tool_method(cls, n)]
    for name in sorted(names, key=lambda n: (_source_line(cls, n), n)):
        if not re.match(TOOL_NAME_PATTERN, name):
            skipped[name] = "tool names must be lower_snake_case, 2 to 64 characters"
            continue
        try:
            schema = _strip_titles(arguments_model(cls, name).model_json_schema())
        except Exception as exc:
            skipped[name] = f"its parameters have no JSON Schema ({type(exc).__name__}: {exc})"
            continue
        summary, arg_docs = _docstring_args(getattr(cls, name).__doc__ or "")
        props = schema.setdefault("properties", {})
        for param in method_parameters(cls, name):
            desc = arg_docs.get(param.name)
            if not desc:
                missing.append(f"{name}.{param.name}")
                desc = param.name.replace("_", " ")
            props[param.name]["description"] = desc
        schema.update(type="object", required=schema.get("required", []), additionalProperties=False)
        if not summary:
            undocumented.append(name)
            summary = f"{name.replace('_', ' ')} (no docstring)"
        try:
            hints = typing.get_type_hints(getattr(cls, name))
        except Exception:
            hints = {}
        output = _output_schema(hints.get("return", inspect.signature(getattr(cls, name)).return_annotation))
        if not output:
            untyped.append(name)
            output = {"description": "undeclared return type"}
        tools.append({"name": name, "description": summary if len(summary) >= 10 else f"{summary} (tool {name})",
                      "read_only": name.split("_")[0] in READ_PREFIXES,
                      "input_schema": schema, "output_schema": output})
    return {"tools": tools, "missing_descriptions": missing, "undocumented_tools": undocumented,
            "untyped_outputs": untyped, "skipped_methods": skipped}


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
    if len(candidates) != 1:
        raise ValueError(f"cannot tell which class holds the tools (candidates: {', '.join(sorted(candidates)) or 'none'}); "
                         "pass --class")
    return next(iter(candidates.values()))


def _initial_state(cls: type, scenario: dict | None) -> tuple[dict[str, Any], list[str]]:
    """The given scenario, else a fresh instance after a default load (``{}`` fills defaults)."""
    from envfactory.envs.imports.pyclass import LOAD_HOOKS, load_state, public_state
    instance = cls()
    if scenario is not None:
        load_state(instance, scenario)
        return public_state(instance), []
    if not any(callable(getattr(instance, h, None)) for h in LOAD_HOOKS):
        return public_state(instance), []
    try:
        load_state(instance, {})
        return public_state(instance), []
    except Exception as exc:  # the hook insists on a full scenario: keep the constructed state
        return public_state(cls()), [f"loading an empty scenario failed ({type(exc).__name__}: {exc}); "
                                     "the initial state is the freshly constructed instance"]


def _argument_candidates(state: dict[str, Any], param: str) -> list[Any]:
    """Values for a parameter found in the state: fields of that name, then keys of a matching table."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == param and isinstance(v, (str, int, float, bool)):
                    found.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(state)
    stem = re.sub(r"_(id|name|key|code)$", "", param)
    for table, rows in state.items():
        if isinstance(rows, dict) and rows and table.startswith(stem):
            found.extend(rows)
    return found


def _starter_cases(cls: type, tools: list[dict], state: dict[str, Any]) -> tuple[list[dict], list[str], list[str]]:
    """Run each read tool once on the initial state, through the runtime the package will use."""
    from envfactory.envs.runtime.manifest import Manifest
    from envfactory.envs.imports.pyclass import PyClassEnvironment
    manifest = Manifest.model_validate({
        "name": "import_probe", "version": "0.0.0", "domain": "imported", "description": "introspection probe only",
        "backend": "pyclass", "class_name": cls.__name__, "tools": tools})
    env = PyClassEnvironment(Path("."), manifest, cls, state)
    cases, untested, reclassified = [], [], []
    for tool in (t for t in tools if t["read_only"]):
        args = {}
        for param in tool["input_schema"]["required"]:
            candidates = _argument_candidates(env.initial_dict, param)
            if candidates:
                args[param] = candidates[0]
        result = env.episode(check_outputs=True).call(tool["name"], args)
        if result.ok:
            cases.append({"name": f"{tool['name']} answers on the initial state",
                          "steps": [{"call": tool["name"], "args": args, "expect": {"ok": True}, "expect_unchanged": True}]})
        elif result.error_kind == "read_only_violation":
            tool["read_only"] = False
            reclassified.append(tool["name"])
        else:
            untested.append(tool["name"])
    return cases, untested, reclassified


def child_introspect(path: Path, class_name: str | None, scenario: dict | None) -> dict[str, Any]:
    """Runs inside the sandbox: import the file, describe its tools, initial state and starter tests."""
    from envfactory.envs.runtime.errors import EnvironmentPackageError
    from envfactory.envs.imports.pyclass import _round_trip, exec_class_file
    module = exec_class_file(path, "envfactory_import_target")
    cls = _pick_class(module, class_name)
    info = introspect_class(cls)
    if not info["tools"]:
        raise ValueError(f"class {cls.__name__} has no public methods that can be tools "
                         f"(skipped: {info['skipped_methods'] or 'none'})")
    state, warnings = _initial_state(cls, scenario)
    try:
        state = _round_trip(cls, state, path.parent)  # reset and restore could not work otherwise
    except EnvironmentPackageError as exc:
        raise ValueError(exc.problem) from None
    cases, untested, reclassified = _starter_cases(cls, info["tools"], state)
    return {**info, "class_name": cls.__name__, "doc": inspect.getdoc(cls) or "", "state": state, "cases": cases,
            "untested_read_tools": untested, "reclassified": reclassified, "warnings": warnings}


# ---------------------------------------------------------------- the package

def _env_name(class_name: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()).strip("_")
    name = re.sub(r"_?(api|server)$", "", name) or name
    return name if re.match(r"^[a-z][a-z0-9_]{1,63}$", name) else f"imported_{name}"[:64]


def _read_scenario(scenario: str | Path | dict | None) -> dict | None:
    if scenario is None or isinstance(scenario, dict):
        return scenario
    path = Path(scenario)
    if not path.is_file():
        raise FileNotFoundError(f"scenario file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"scenario file {path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError(f"scenario file {path} must hold a JSON object (the state to load), not {type(data).__name__}")
    return data


def _introspect_in_sandbox(path: Path, class_name: str | None, scenario: dict | None) -> dict[str, Any]:
    from envfactory.envs.sandbox.runner import new_workspace, run_sandboxed
    workspace = new_workspace("ef-import-")
    try:
        shutil.copy(path, workspace / path.name)
        result = run_sandboxed({"task": "introspect", "path": str(workspace / path.name), "class_name": class_name,
                                "scenario": scenario}, workspace)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    payload = result.payload or {}
    if result.status != "ok" or "tools" not in payload:
        reason = payload.get("error") or result.detail or "no result"
        raise RuntimeError(f"importing {path.name} failed in the sandbox ({result.status}): {reason}")
    return payload


def import_class(path: str | Path, out_dir: str | Path | None = None, class_name: str | None = None,
                 name: str | None = None, scenario: str | Path | dict | None = None) -> ImportReport:
    """Write a pyclass package for the tool class in ``path``; the report says what needs attention."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix != ".py":
        raise ValueError(f"{path.name} is not a Python file")
    if name is not None and not re.match(r"^[a-z][a-z0-9_]{1,63}$", name):
        raise ValueError(f"environment name {name!r} must be lower_snake_case, 2 to 64 characters")
    payload = _introspect_in_sandbox(path, class_name, _read_scenario(scenario))
    env_name = name or _env_name(payload["class_name"])
    out = Path(out_dir) if out_dir else Path("envs_imported") / env_name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, out / "tools.py")
    (out / "scenario.json").write_text(json.dumps(payload["state"], indent=1, ensure_ascii=False), encoding="utf-8")
    cases = payload["cases"] or [{"name": "unknown tools are refused", "steps": [
        {"call": "no_such_tool", "args": {}, "expect": {"ok": False, "error_kind": "unknown_tool"}}]}]
    (out / "tests.json").write_text(json.dumps({"cases": cases}, indent=1, ensure_ascii=False), encoding="utf-8")
    description = payload["doc"].split("\n\n")[0].replace("\n", " ") or f"Tools of {payload['class_name']}, imported."
    if len(description) < 20:
        description = f"{description} (imported from {path.name})"
    manifest = {"name": env_name, "version": "1.0.0", "domain": "imported", "description": description,
                "provenance": [{"title": f"imported from {path.name}", "url": path.as_uri()}],
                "backend": "pyclass", "class_name": payload["class_name"], "seed": "scenario.json",
                "tools_module": "tools.py", "tests": "tests.json", "tools": payload["tools"]}
    (out / "env.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "verified.json").unlink(missing_ok=True)  # a re-import is new, unverified code
    tools = payload["tools"]
    return ImportReport(
        package=out, name=env_name, class_name=payload["class_name"], tools=[t["name"] for t in tools],
        read_only=[t["name"] for t in tools if t["read_only"]], missing_descriptions=payload["missing_descriptions"],
        undocumented_tools=payload["undocumented_tools"], untyped_outputs=payload["untyped_outputs"],
        untested_read_tools=payload["untested_read_tools"], reclassified=payload["reclassified"],
        skipped_methods=payload["skipped_methods"], tests_written=len(payload["cases"]), warnings=payload["warnings"])


def import_class_file(path: str | Path, out_dir: str | Path | None = None, class_name: str | None = None,
                      name: str | None = None, scenario: str | Path | dict | None = None) -> Path:
    """Write a pyclass package for the tool class in ``path`` and return its folder."""
    return import_class(path, out_dir, class_name, name, scenario).package


def run_import_command(args) -> int:
    try:
        report = import_class(args.path, args.out, args.class_name, args.name, args.scenario)
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
    print(f"imported {report.class_name} as {report.name} into {out}: {len(report.tools)} tools")
    for tool in report.tools:
        print(f"  {tool} ({'read' if tool in report.read_only else 'write'})")
    notes = [("parameters described from their name (no Args: entry in the docstring)", report.missing_descriptions),
             ("tools without a docstring", report.undocumented_tools),
             ("tools without a return annotation (permissive output schema)", report.untyped_outputs),
             ("read tools named like reads that changed the state, annotated as writes", report.reclassified),
             ("read tools with no starter test (no arguments found, or the call failed)", report.untested_read_tools),
             ("methods skipped", [f"{m}: {why}" for m, why in report.skipped_methods.items()])]
    for label, items in notes:
        if items:
            print(f"  warning: {label}: {', '.join(items)}")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    print(f"  wrote {report.tests_written} starter test(s) exercising read tools; add success and error cases for "
          f"every tool in tests.json, then run `envfactory envs validate {out}`")
    return 0
