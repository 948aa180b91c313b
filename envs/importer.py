"""``envfactory envs import``: turn a Python file holding a stateful tool class into a package.

Introspection imports the untrusted file, so it runs in the sandbox. Each public method becomes a
tool: its JSON Schema comes from the signature's type hints (pydantic), per-parameter
descriptions from the Google-style ``Args:`` section of its docstring, the output schema from
the return annotation, and the read/write annotation from its name (overridable in env.json).
"""
from __future__ import annotations

import inspect
import json
import re
import shutil
import sys
import typing
from pathlib import Path
from typing import Any

SKIP_METHODS = {"load_scenario", "save_scenario", "_load_scenario"}


def _docstring_args(doc: str) -> tuple[str, dict[str, str]]:
    """Summary and per-argument descriptions from a Google-style docstring."""
    doc = inspect.cleandoc(doc or "")
    summary = doc.split("\n\n")[0].replace("\n", " ").strip()
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


def _schema_for(annotation: Any) -> dict[str, Any]:
    from pydantic import TypeAdapter
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    try:
        schema = TypeAdapter(annotation).json_schema()
    except Exception:
        return {}
    schema.pop("title", None)
    return schema


def _output_schema(annotation: Any) -> dict[str, Any]:
    schema = _schema_for(annotation)
    return schema or {"description": "undeclared return type"}


def introspect_class(cls: type) -> tuple[list[dict[str, Any]], list[str]]:
    from .pyclass import READ_PREFIXES
    tools, missing = [], []
    hints_cache: dict[str, Any] = {}
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_") or name in SKIP_METHODS:
            continue
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        summary, arg_docs = _docstring_args(fn.__doc__ or "")
        props, required = {}, []
        for pname, param in list(sig.parameters.items())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            schema = _schema_for(hints.get(pname, param.annotation))
            desc = arg_docs.get(pname)
            if not desc:
                missing.append(f"{name}.{pname}")
                desc = pname.replace("_", " ")
            schema["description"] = desc
            if param.default is param.empty:
                required.append(pname)
            else:
                try:
                    json.dumps(param.default)
                    schema["default"] = param.default
                except TypeError:
                    pass
            props[pname] = schema
        description = summary or name.replace("_", " ")
        if len(description) < 10:
            description = f"{description} (tool {name})"
        tools.append({"name": name, "description": description,
                      "read_only": name.split("_")[0] in READ_PREFIXES,
                      "input_schema": {"type": "object", "properties": props, "required": required,
                                       "additionalProperties": False},
                      "output_schema": _output_schema(hints.get("return", sig.return_annotation))})
    return tools, missing


def _pick_class(module, class_name: str | None) -> type:
    classes = {n: c for n, c in vars(module).items() if inspect.isclass(c) and c.__module__ == module.__name__}
    if class_name:
        if class_name not in classes:
            raise ValueError(f"no class {class_name!r} in the file (found: {', '.join(sorted(classes)) or 'none'})")
        return classes[class_name]
    candidates = {n: c for n, c in classes.items()
                  if any(not m.startswith("_") and m not in SKIP_METHODS for m, _ in inspect.getmembers(c, inspect.isfunction))
                  and not issubclass(c, Exception) and not hasattr(c, "model_fields")}
    if len(candidates) != 1:
        raise ValueError(f"cannot tell which class holds the tools ({', '.join(sorted(candidates)) or 'none'}); pass --class")
    return next(iter(candidates.values()))


def child_introspect(path: Path, class_name: str | None, scenario: dict | None) -> dict[str, Any]:
    """Runs inside the sandbox: import the file, describe its tools and initial state."""
    import importlib.util

    from .pyclass import load_state, public_state
    spec = importlib.util.spec_from_file_location("envfactory_import_target", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cls = _pick_class(module, class_name)
    tools, missing = introspect_class(cls)
    instance = cls()
    if scenario is not None:
        load_state(instance, scenario)
    return {"class_name": cls.__name__, "doc": inspect.getdoc(cls) or "", "tools": tools,
            "missing_descriptions": missing, "state": public_state(instance)}


def import_class_file(path: str | Path, out_dir: str | Path | None = None, class_name: str | None = None,
                      name: str | None = None, scenario: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    from .sandbox import new_workspace, run_sandboxed
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    scenario_data = json.loads(Path(scenario).read_text()) if scenario else None
    workspace = new_workspace("ef-import-")
    try:
        shutil.copy(path, workspace / path.name)
        result = run_sandboxed({"task": "introspect", "path": str(workspace / path.name), "class_name": class_name,
                                "scenario": scenario_data}, workspace)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    payload = result.payload or {}
    if result.status != "ok" or "tools" not in payload:
        raise RuntimeError(f"importing {path.name} failed in the sandbox ({result.status}): "
                           f"{result.detail or payload.get('error', 'no result')}")
    env_name = name or re.sub(r"[^a-z0-9_]", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", payload["class_name"]).lower()).strip("_")
    env_name = re.sub(r"_?(api|server)$", "", env_name) or env_name
    if not re.match(r"^[a-z][a-z0-9_]{1,63}$", env_name):
        env_name = f"imported_{env_name}"[:64]
    out = Path(out_dir) if out_dir else Path("envs_imported") / env_name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, out / "tools.py")
    (out / "scenario.json").write_text(json.dumps(payload["state"], indent=1))
    read_tools = [t for t in payload["tools"] if t["read_only"] and not t["input_schema"]["required"]]
    cases = [{"name": f"{t['name']} answers on the initial state", "steps": [{"call": t["name"], "args": {}, "expect": {"ok": True}}]}
             for t in read_tools] or [{"name": "unknown tools are refused", "steps": [
                 {"call": "no_such_tool", "args": {}, "expect": {"ok": False, "error_kind": "unknown_tool"}}]}]
    (out / "tests.json").write_text(json.dumps({"cases": cases}, indent=1))
    description = (payload["doc"].split("\n\n")[0].replace("\n", " ") or f"Tools of {payload['class_name']}, imported.")
    if len(description) < 20:
        description = f"{description} (imported from {path.name})"
    manifest = {"name": env_name, "version": "1.0.0", "domain": "imported", "description": description,
                "provenance": [{"title": f"imported from {path.name}", "url": path.as_uri()}],
                "backend": "pyclass", "class_name": payload["class_name"], "seed": "scenario.json",
                "tools_module": "tools.py", "tests": "tests.json", "tools": payload["tools"]}
    (out / "env.json").write_text(json.dumps(manifest, indent=1))
    return out, {"name": env_name, "class": payload["class_name"], "tools": [t["name"] for t in payload["tools"]],
                 "read_only": [t["name"] for t in payload["tools"] if t["read_only"]],
                 "missing_descriptions": payload["missing_descriptions"], "tests_written": len(cases)}


def run_import_command(args) -> int:
    try:
        out, info = import_class_file(args.path, args.out, args.class_name, args.name, args.scenario)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"import failed: {exc}", file=sys.stderr)
        return 1
    info["package"] = str(out)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"imported {info['class']} as {info['name']} into {out}: {len(info['tools'])} tools "
              f"({len(info['read_only'])} read-only: {', '.join(info['read_only']) or 'none'})")
        if info["missing_descriptions"]:
            print(f"  parameters without a docstring description (named from the parameter): {', '.join(info['missing_descriptions'])}")
        print(f"  wrote {info['tests_written']} starter test(s); add success and error cases for every tool, then run "
              f"`envfactory envs validate {out}`")
    return 0
