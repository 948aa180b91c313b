"""Versioned prompt templates.

One file per version: ``templates/<agent>/<name>/v<N>.md.j2`` with YAML front matter (id, version,
description, input_variables, output_schema, changelog) and a Jinja2 body. A body may split into
``## system`` and ``## user`` sections, which become a system and a human message. Released
versions are immutable (``templates/versions.lock.json`` pins their hashes); a change is a new
file. Users add or override versions from their own directories (argument or
``ENVFACTORY_PROMPTS_PATH``) without touching the package.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from envfactory.prompts.bounded import BoundedSandbox, RenderLimitError, render_bounded

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
LOCK_FILE = TEMPLATES_DIR / "versions.lock.json"
_FILE = re.compile(r"^v(\d+)\.md\.j2$")
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", re.S)


class PromptError(ValueError):
    """Base class: every prompt problem names the template and what is wrong (a ValueError: a
    LangGraph server shows the message to the client instead of "An internal error occurred")."""


class UnknownPromptError(PromptError):
    pass


class UnknownVersionError(PromptError):
    pass


class FrontMatterError(PromptError):
    pass


class PromptVariableError(PromptError):
    pass


class PromptRenderError(PromptError):
    """The template failed while rendering (a runtime error in it, or past a render bound)."""


class Variable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    optional: bool = False  # None is a value only for a variable declared optional (new versions may)


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    version: int = Field(ge=1)
    description: str
    input_variables: list[Variable | str] = []
    output_schema: str | None = None
    changelog: str | None = None

    def variables(self) -> list[str]:
        return [v if isinstance(v, str) else v.name for v in self.input_variables]

    def optional(self) -> set[str]:
        return {v.name for v in self.input_variables if isinstance(v, Variable) and v.optional}

    @model_validator(mode="after")
    def _names_once(self) -> "FrontMatter":
        names = self.variables()
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"input_variables declares {', '.join(twice)} more than once")
        return self


class PromptRef(BaseModel):
    """What produced an artifact: recorded in environments, trajectories and reports."""

    id: str
    version: str
    sha256: str


@dataclass(frozen=True)
class PromptTemplate:
    front: FrontMatter
    body: str
    path: Path
    digest: str = ""  # sha256 of the file bytes this template was parsed from

    @property
    def id(self) -> str:
        return self.front.id

    @property
    def version(self) -> str:
        return f"v{self.front.version}"

    @property
    def sha256(self) -> str:
        # the hash of the very bytes the body came from (no re-read per render: ``_parse``'s cache
        # is keyed by path, modification time and size, so an edited file is parsed and hashed again)
        return self.digest or hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def ref(self) -> PromptRef:
        return PromptRef(id=self.id, version=self.version, sha256=self.sha256)


class RenderedPrompt(BaseModel):
    ref: PromptRef
    text: str
    system: str | None = None
    user: str | None = None

    def messages(self) -> list:
        """LangChain messages: a system and a human message when the template has both sections."""
        from langchain_core.messages import HumanMessage, SystemMessage
        if self.system is None and self.user is None:
            return [HumanMessage(self.text)]
        out = []
        if self.system:
            out.append(SystemMessage(self.system))
        if self.user:
            out.append(HumanMessage(self.user))
        return out


_parsed: dict[tuple[str, int, int], PromptTemplate] = {}


def _parse(path: Path) -> PromptTemplate:
    """Parse a template file (cached by path and modification time: runs render the same ones often)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise FrontMatterError(f"prompt template {path} cannot be read: {exc.strerror or exc}") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _parsed:
        _parsed[key] = _parse_file(path)
    return _parsed[key]


def _parse_file(path: Path) -> PromptTemplate:
    where = f"prompt template {path}"
    try:
        raw = path.read_bytes()
        # utf-8-sig: an editor's byte-order mark is not part of the front matter
        text = raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")  # as read_text's universal newlines
    except OSError as exc:
        raise FrontMatterError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise FrontMatterError(f"{where} is not UTF-8 text (byte {exc.start})") from None
    match = _FRONT.match(text)
    if not match:
        raise FrontMatterError(f"{where}: no YAML front matter (the file must start with '---', the fields, then '---')")
    try:
        data = yaml.safe_load(match.group(1))
    except (yaml.YAMLError, RecursionError) as exc:
        raise FrontMatterError(f"{where}: front matter is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise FrontMatterError(f"{where}: front matter must be a mapping of fields")
    try:
        front = FrontMatter.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'front matter'}: {e['msg']}" for e in exc.errors())
        raise FrontMatterError(f"{where}: front matter is invalid: {problems}") from None
    expected = f"v{front.version}.md.j2"
    if path.name != expected:
        raise FrontMatterError(f"{where}: version {front.version} in the front matter but the file is named {path.name} (expected {expected})")
    return PromptTemplate(front, match.group(2), path, hashlib.sha256(raw).hexdigest())


class PromptRegistry:
    def __init__(self, extra_dirs: list[str | Path] | None = None):
        env_dirs = [d for d in os.environ.get(PROMPTS_PATH_VAR, "").split(os.pathsep) if d]
        # later directories override earlier ones: package < environment variable < argument
        self.dirs = [TEMPLATES_DIR, *map(Path, env_dirs), *map(Path, extra_dirs or [])]
        self._jinja = BoundedSandbox(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
        self._index: dict[str, dict[int, Path]] = {}
        self._compiled: dict[str, Any] = {}
        for base in self.dirs:
            if not base.is_dir():
                continue
            for path in base.rglob("v*.md.j2"):
                m = _FILE.match(path.name)
                if m:
                    prompt_id = path.parent.relative_to(base).as_posix()
                    self._index.setdefault(prompt_id, {})[int(m.group(1))] = path

    def ids(self) -> list[str]:
        return sorted(self._index)

    def versions(self, prompt_id: str) -> list[str]:
        return [f"v{n}" for n in sorted(self._versions(prompt_id))]

    def _versions(self, prompt_id: str) -> dict[int, Path]:
        if prompt_id not in self._index:
            raise UnknownPromptError(f"unknown prompt {prompt_id!r}; known prompts: {', '.join(self.ids())}")
        return self._index[prompt_id]

    def get(self, prompt_id: str, version: str | int = "latest") -> PromptTemplate:
        versions = self._versions(prompt_id)
        if version in ("latest", None, ""):
            number = max(versions)
        else:
            text = str(version).lstrip("v")
            if not text.isdigit() or int(text) not in versions:
                raise UnknownVersionError(f"prompt {prompt_id!r} has no version {version!r}; it has {', '.join(self.versions(prompt_id))}")
            number = int(text)
        template = _parse(versions[number])
        if template.front.id != prompt_id:
            raise FrontMatterError(f"prompt template {versions[number]}: front matter id {template.front.id!r} does not match its folder {prompt_id!r}")
        return template

    def resolve(self, prompt_id: str, versions: dict[str, str] | None = None) -> PromptTemplate:
        """The version a run asked for (a graph Context's ``prompt_versions``), else the latest."""
        return self.get(prompt_id, (versions or {}).get(prompt_id, "latest"))

    def render(self, prompt_id: str, version: str | int = "latest", **variables: Any) -> RenderedPrompt:
        template = self.get(prompt_id, version)
        label = f"{template.id}@{template.version}"
        declared = set(template.front.variables())
        extra = sorted(set(variables) - declared)
        if extra:
            raise PromptVariableError(f"{label}: variable(s) {', '.join(extra)} are not declared in its input_variables")
        missing = sorted(declared - set(variables))
        if missing:
            raise PromptVariableError(f"{label}: missing variable(s) {', '.join(missing)}")
        empty = sorted(n for n in declared - template.front.optional() if variables[n] is None)
        if empty:  # "assistant for None" is never what a caller meant
            raise PromptVariableError(f"{label}: variable(s) {', '.join(empty)} are None; pass a value "
                                      f"(a template may declare a variable 'optional: true')")
        try:
            compiled = self._compiled.get(template.body)
            if compiled is None:
                compiled = self._compiled[template.body] = self._jinja.from_string(template.body)
            text = render_bounded(compiled, variables)
        except UndefinedError as exc:
            raise PromptVariableError(f"{label}: the template uses an undeclared variable ({exc.message})") from None
        except TemplateSyntaxError as exc:
            raise FrontMatterError(f"{label}: template syntax error at line {exc.lineno}: {exc.message}") from None
        except RenderLimitError as exc:
            raise PromptRenderError(f"{label}: rendering stopped: {exc}") from None
        except (RecursionError, Exception) as exc:  # any other fault of the template: say which and where
            raise PromptRenderError(f"{label}: the template failed{_template_line(exc)}: "
                                    f"{type(exc).__name__}: {str(exc)[:300]}") from None
        system, user = _sections(text)
        return RenderedPrompt(ref=template.ref, text=text, system=system, user=user)

    def undeclared_in_body(self, template: PromptTemplate) -> set[str]:
        """Variables the body uses that the front matter does not declare (a lint for authors)."""
        try:
            used = meta.find_undeclared_variables(self._jinja.parse(template.body))
        except TemplateSyntaxError as exc:
            raise FrontMatterError(f"{template.id}@{template.version}: template syntax error at line {exc.lineno}: "
                                   f"{exc.message}") from None
        except RecursionError:
            raise FrontMatterError(f"{template.id}@{template.version}: the template nests too deeply to parse") from None
        return used - set(template.front.variables())


def _template_line(exc: BaseException) -> str:
    """" at line N" of the template where ``exc`` was raised (Jinja maps its frames to template lines)."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" at line {line}" if line else ""


def _sections(text: str) -> tuple[str | None, str | None]:
    parts = re.split(r"^## (system|user)\s*$", text, flags=re.M)
    if len(parts) == 1:
        return None, None
    found = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    return found.get("system"), found.get("user")


PROMPTS_PATH_VAR = "ENVFACTORY_PROMPTS_PATH"
# a run's own template folders (a graph Context's prompts_dir), set by the run's nodes for their thread
_run_dirs: ContextVar[tuple[str, ...]] = ContextVar("envfactory_prompt_dirs", default=())
_registries: dict[tuple[str, tuple[str, ...]], PromptRegistry] = {}
_registries_lock = threading.Lock()


def use_prompt_dirs(*dirs: str | Path) -> None:
    """Template folders of the current run (on top of ``ENVFACTORY_PROMPTS_PATH``), for this thread or task."""
    _run_dirs.set(tuple(str(d) for d in dirs if d))


def default_registry() -> PromptRegistry:
    """The registry of the bundled templates, ``ENVFACTORY_PROMPTS_PATH`` as it is now (a changed value
    takes effect at the next render, no restart) and the run's own folders (``use_prompt_dirs``)."""
    key = (os.environ.get(PROMPTS_PATH_VAR, ""), _run_dirs.get())
    registry = _registries.get(key)
    if registry is None:
        with _registries_lock:
            if len(_registries) > 32:
                _registries.clear()
            registry = _registries.setdefault(key, PromptRegistry(extra_dirs=list(key[1])))
    return registry
