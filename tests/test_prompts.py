"""Versioned prompt templates: rendering, errors, user overrides, immutability."""
from __future__ import annotations

import importlib
import json

import pytest

from envfactory.prompts.registry import (LOCK_FILE, FrontMatterError, PromptRegistry, PromptVariableError,
                                         UnknownPromptError, UnknownVersionError)

DUMMY = {"target": "a library API", "results": [{"url": "https://x.test", "title": "t", "snippet": "s"}],
         "brief": "b", "files": {"env.json": "{}"}, "example": {"tools.py": "x"}, "report": "r", "tools": [{"name": "t"}],
         "persona": "p", "turns": [{"actions": "a", "known": {"email": "e"}}], "queries": ["q"], "known": {"a": 1},
         "intent": "i", "details": {"d": 1}, "service": "s", "conversation": "c",
         "params": [{"tool": "t", "param": "p", "type": "integer", "description": "d", "guess": "tool"}],
         "schema": "CREATE TABLE t (t_id INTEGER PRIMARY KEY)", "seed_sample": {"t": [{"t_id": 1}]},
         "cases": [{"name": "c", "steps": []}], "objection": "o",
         "facts": [{"selectors": ["look up book: the book whose title is \"T\""], "references": []}],
         "messages": ["m"], "selectors": ["the run with the latest created at"]}


def write(dir_, pid, version, body="Hello {{ name }}", variables=("name",), extra=""):
    path = dir_ / pid / f"v{version}.md.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    vars_yaml = "\n".join(f"  - {v}" for v in variables)
    path.write_text(f"---\nid: {pid}\nversion: {version}\ndescription: test prompt\ninput_variables:\n{vars_yaml}\n{extra}---\n{body}\n")
    return path


def test_every_shipped_template_renders_with_its_declared_variables():
    reg = PromptRegistry()
    assert len(reg.ids()) >= 9
    for pid in reg.ids():
        for version in reg.versions(pid):
            t = reg.get(pid, version)
            assert not reg.undeclared_in_body(t), f"{pid}@{version} uses undeclared variables"
            out = reg.render(pid, version, **{v: DUMMY[v] for v in t.front.variables()})
            assert out.text.strip() and out.ref.id == pid and out.ref.sha256 == t.sha256
            if t.front.output_schema:
                module, _, name = t.front.output_schema.rpartition(".")
                assert hasattr(importlib.import_module(module), name), t.front.output_schema


def test_released_versions_are_immutable():
    reg = PromptRegistry()
    lock = json.loads(LOCK_FILE.read_text())
    shipped = {f"{pid}@{v}": reg.get(pid, v).sha256 for pid in reg.ids() for v in reg.versions(pid)}
    for key, sha in lock.items():
        assert shipped.get(key) == sha, f"{key} changed after release: make a new version file instead"
    assert set(shipped) <= set(lock), f"add new versions to {LOCK_FILE.name}: {sorted(set(shipped) - set(lock))}"


def test_sections_become_messages():
    out = PromptRegistry().render("judge/trajectory", conversation="user: hi")
    kinds = [type(m).__name__ for m in out.messages()]
    assert kinds == ["SystemMessage", "HumanMessage"] and "user: hi" in out.user


def test_unknown_id_and_version():
    reg = PromptRegistry()
    with pytest.raises(UnknownPromptError, match="unknown prompt 'nope/x'; known prompts: code_agent/implement"):
        reg.get("nope/x")
    with pytest.raises(UnknownVersionError, match="has no version 'v9'; it has v1"):
        reg.get("judge/trajectory", "v9")


def test_missing_and_undeclared_variables_name_template_and_variable():
    reg = PromptRegistry()
    with pytest.raises(PromptVariableError, match=r"judge/trajectory@v1: missing variable\(s\) conversation"):
        reg.render("judge/trajectory")
    with pytest.raises(PromptVariableError, match=r"judge/trajectory@v1: variable\(s\) mood are not declared"):
        reg.render("judge/trajectory", conversation="c", mood="x")


def test_body_using_an_undeclared_variable_fails_at_render(tmp_path):
    write(tmp_path, "t/p", 1, body="{{ name }} and {{ secret }}")
    with pytest.raises(PromptVariableError, match="t/p@v1: the template uses an undeclared variable"):
        PromptRegistry([tmp_path]).render("t/p", name="x")


@pytest.mark.parametrize("text,fragment", [
    ("no front matter at all", "no YAML front matter"),
    ("---\nid: t/p\nversion: [1\n---\nbody", "not valid YAML"),
    ("---\nid: t/p\ndescription: d\n---\nbody", "version: Field required"),
    ("---\nid: t/p\nversion: one\ndescription: d\n---\nbody", "version: Input should be a valid integer"),
    ("---\nid: t/p\nversion: 2\ndescription: d\n---\nbody", "file is named v1.md.j2"),
    ("---\nid: t/other\nversion: 1\ndescription: d\n---\nbody", "does not match its folder"),
])
def test_malformed_front_matter(tmp_path, text, fragment):
    path = tmp_path / "t" / "p" / "v1.md.j2"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(FrontMatterError, match=fragment):
        PromptRegistry([tmp_path]).get("t/p")


def test_user_directory_overrides_and_adds_versions(tmp_path, monkeypatch):
    write(tmp_path, "judge/trajectory", 1, body="mine {{ conversation }}", variables=("conversation",))
    write(tmp_path, "judge/trajectory", 2, body="newer {{ conversation }}", variables=("conversation",))
    reg = PromptRegistry([tmp_path])
    assert reg.versions("judge/trajectory") == ["v1", "v2"]
    assert reg.render("judge/trajectory", conversation="c").text.strip() == "newer c"       # latest
    assert reg.render("judge/trajectory", "v1", conversation="c").text.strip() == "mine c"  # overridden
    assert reg.resolve("judge/trajectory", {"judge/trajectory": "v1"}).path == tmp_path / "judge" / "trajectory" / "v1.md.j2"
    monkeypatch.setenv("ENVFACTORY_PROMPTS_PATH", str(tmp_path))
    assert PromptRegistry().versions("judge/trajectory") == ["v1", "v2"]


def test_cli_lists_and_shows(capsys):
    from envfactory.cli.main import main
    assert main(["prompts", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"id": "judge/trajectory", "versions": ["v1"]}.items() <= next(r for r in rows if r["id"] == "judge/trajectory").items()
    assert main(["prompts", "show", "judge/trajectory@v1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["variables"] == ["conversation"]
    assert main(["prompts", "show", "judge/trajectory@v7"]) == 2


def test_template_hash_is_cached_per_file_content_and_follows_edits(tmp_path, monkeypatch):
    import hashlib
    import os
    from pathlib import Path

    path = write(tmp_path, "demo/hash", 1)
    reg = PromptRegistry([tmp_path])
    first = reg.render("demo/hash", name="a").ref.sha256
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    reads = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or original(self))
    for _ in range(3):
        assert reg.render("demo/hash", name="b").ref.sha256 == first
    assert path not in reads  # renders of an unchanged file never read it again
    stat = path.stat()
    write(tmp_path, "demo/hash", 1, body="Hi {{ name }}")  # an edit, even within the same mtime tick
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited = reg.render("demo/hash", name="c")
    assert edited.text.startswith("Hi c") and edited.ref.sha256 == hashlib.sha256(original(path)).hexdigest() != first
