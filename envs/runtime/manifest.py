"""The environment package format: a folder with ``env.json`` and the files it names.

```
<package>/
  env.json      manifest: identity, provenance, clock, volatile columns, tool specs
  schema.sql    SQLite DDL
  seed.json     {"table": [row, ...], ...} inserted in file order (parents before children)
  tools.py      one function per tool: def <tool>(ctx, **arguments) -> JSON value
  tests.json    the environment's own executable test cases (see envfactory.envs.validation.testcases)
```
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from envfactory.envs.runtime.errors import EnvironmentPackageError

MANIFEST_FILE = "env.json"
NAME_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
# Imported tools keep their source names (``lostCard``), so upper case is allowed after the first letter.
TOOL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{1,63}$"
RESERVED_PREFIX = "_ef_"  # control operations live under this prefix, never as agent tools


class Source(BaseModel):
    """Where a fact about the modelled service came from."""

    model_config = ConfigDict(extra="forbid")
    title: str
    url: str
    retrieved: str | None = Field(None, description="ISO date the document was read")
    note: str | None = None


class ToolSpec(BaseModel):
    """One tool as the agent sees it, plus the runtime's read/write annotation."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str = Field(min_length=10)
    read_only: StrictBool  # true or false: "yes" or 1 is a typo to report, not a value to guess at
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    # Arguments whose value does not change what the call means (page size, verbosity);
    # verification may let any value fill them.
    maskable_arguments: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith(RESERVED_PREFIX):
            raise ValueError(f"tool names starting with {RESERVED_PREFIX!r} are reserved for control operations")
        return name

    @model_validator(mode="after")
    def _schemas_are_complete(self) -> "ToolSpec":
        for label, schema in (("input_schema", self.input_schema), ("output_schema", self.output_schema)):
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"{label} is not a valid JSON Schema: {exc.message}") from None
        schema = self.input_schema
        if schema.get("type") != "object":
            raise ValueError('input_schema must have "type": "object"')
        props = schema.get("properties", {})
        for pname, pschema in props.items():
            if not isinstance(pschema, dict) or not str(pschema.get("description", "")).strip():
                raise ValueError(f"parameter {pname!r} has no description")
        missing = [r for r in schema.get("required", []) if r not in props]
        if missing:
            raise ValueError(f"required parameters {missing} are not declared in properties")
        unknown_masks = [m for m in self.maskable_arguments if m not in props]
        if unknown_masks:
            raise ValueError(f"maskable_arguments {unknown_masks} are not parameters")
        return self

    def openai_schema(self) -> dict[str, Any]:
        """The function spec in OpenAI tools format (what chat templates and trainers read)."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.input_schema}}


class PyClassSettings(BaseModel):
    """How the ``pyclass`` backend builds an imported class (see envfactory.envs.imports)."""

    model_config = ConfigDict(extra="forbid")
    # Folder inside the package that is put on the import path, and the module to import from it
    # (classes whose module imports sibling modules of its own package); None: ``tools_module`` alone.
    import_root: str | None = None
    module: str | None = None
    # MCP server files: the module global the ``@mcp.tool()`` wrappers call (``api``); the tools are
    # then those wrappers, not the class's methods.
    instance_global: str | None = None
    # "constructor": the initial state is the class as constructed (sets, objects and private state
    # kept); "scenario": the constructed class loaded with the seed file.
    initial: Literal["constructor", "scenario"] = "scenario"
    # Imported code keeps whatever a raising call changed, as the class itself does; true restores
    # the state before a call that raises.
    rollback_on_error: bool = False

    @field_validator("import_root")
    @classmethod
    def _root_inside(cls, rel: str | None) -> str | None:
        if rel is not None and (PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts):
            raise ValueError(f"{rel!r} must be a folder inside the package")
        return rel


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    domain: str
    description: str = Field(min_length=20)
    provenance: list[Source] = Field(default_factory=list)
    # Tools read the time from here, so runs are reproducible.
    clock: str = "2026-01-15T09:00:00Z"
    schema_file: str = Field("schema.sql", alias="schema")
    seed: str = "seed.json"
    tools_module: str = "tools.py"
    tests: str | None = "tests.json"
    # Columns excluded from state hashes and diffs (timestamps, generated tokens).
    volatile_columns: dict[str, list[str]] = Field(default_factory=dict)
    backend: Literal["sqlite", "pyclass"] = "sqlite"
    # For backend "pyclass": the class that holds the state (see envfactory.envs.imports.pyclass).
    class_name: str | None = None
    pyclass: PyClassSettings = Field(default_factory=PyClassSettings)
    tools: list[ToolSpec] = Field(min_length=1)

    @field_validator("clock")
    @classmethod
    def _clock_is_a_time(cls, clock: str) -> str:
        try:
            ok = "T" in clock and datetime.fromisoformat(clock.replace("Z", "+00:00")) is not None
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{clock!r} is not an ISO 8601 date and time such as {cls.model_fields['clock'].default}")
        return clock

    @field_validator("schema_file", "seed", "tools_module", "tests")
    @classmethod
    def _inside_the_package(cls, rel: str | None) -> str | None:
        if rel is None:
            return rel
        path = PurePosixPath(rel.replace("\\", "/"))
        if not rel.strip() or path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", rel):
            raise ValueError(f"{rel!r} must be a file name inside the package folder")
        return rel

    @model_validator(mode="after")
    def _unique_tools(self) -> "Manifest":
        names = [t.name for t in self.tools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate tool names: {dupes}")
        if self.backend == "pyclass" and not self.class_name:
            raise ValueError('backend "pyclass" needs "class_name"')
        return self

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)


def _pretty_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        # Name tools by name rather than list index: "tools.3" says little to an author.
        loc = re.sub(r"^tools\.(\d+)", lambda m: f"tools[{m.group(1)}]", loc)
        parts.append(f"{loc or 'manifest'}: {err['msg']}")
    return "; ".join(parts)


def read_package_json(package_dir: Path, rel: str, expect: type = dict, what: str = "a JSON object") -> Any:
    """A JSON file of a package, with an error that names the file, line and problem."""
    try:
        raw = json.loads((package_dir / rel).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EnvironmentPackageError(str(package_dir), f"{rel} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise EnvironmentPackageError(str(package_dir), f"{rel} is not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise EnvironmentPackageError(str(package_dir), f"{rel} nests too deeply to read") from None
    except OSError as exc:
        raise EnvironmentPackageError(str(package_dir), f"{rel} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(raw, expect):
        raise EnvironmentPackageError(str(package_dir), f"{rel} must hold {what}")
    return raw


def load_manifest(package_dir: str | Path) -> Manifest:
    package_dir = Path(package_dir)
    path = package_dir / MANIFEST_FILE
    if not package_dir.is_dir():
        raise EnvironmentPackageError(str(package_dir), "is not a directory")
    if not path.is_file():
        raise EnvironmentPackageError(str(package_dir), f"has no {MANIFEST_FILE}")
    raw = read_package_json(package_dir, MANIFEST_FILE)
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise EnvironmentPackageError(str(package_dir), f"{MANIFEST_FILE} is invalid: {_pretty_validation_error(exc)}") from None
    files = [("seed", manifest.seed), ("tools_module", manifest.tools_module)]
    if manifest.backend == "sqlite":
        files.insert(0, ("schema", manifest.schema_file))
    root = package_dir.resolve()
    for label, rel in files:
        if not (package_dir / rel).is_file():
            raise EnvironmentPackageError(str(package_dir), f"{label} file {rel!r} named in {MANIFEST_FILE} does not exist")
        if not (package_dir / rel).resolve().is_relative_to(root):  # a symlink out of the package
            raise EnvironmentPackageError(str(package_dir), f"{label} file {rel!r} named in {MANIFEST_FILE} resolves outside the package folder")
    return manifest
