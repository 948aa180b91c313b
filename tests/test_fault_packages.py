"""Malformed packages get our error (``EnvironmentPackageError`` naming the file and the problem),
never a library's (an AttributeError text, a bare KeyError, a UnicodeDecodeError), and nothing
malformed is accepted quietly (a garbage clock, volatile columns of a table that does not exist,
schema files outside the package). ``_ef_restore`` of bytes that are not a snapshot is refused and
the episode stays as it was."""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import pytest

from envfactory.envs import Environment, EnvironmentPackageError
from envfactory.envs.runtime.packages import CATALOG_DIR
from envfactory.envs.runtime.state import Snapshot

LIBRARY = Path(CATALOG_DIR) / "library"


def _manifest(change):
    def mutate(d: Path):
        m = json.loads((d / "env.json").read_text())
        change(m)
        (d / "env.json").write_text(json.dumps(m))
    return mutate


def _seed(change):
    def mutate(d: Path):
        s = json.loads((d / "seed.json").read_text())
        change(s)
        (d / "seed.json").write_text(json.dumps(s))
    return mutate


def _write(name: str, content: str | bytes):
    def mutate(d: Path):
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return mutate


MALFORMED = [
    ("garbage clock", _manifest(lambda m: m.update(clock="not a time")), "clock: Value error, 'not a time' is not an ISO 8601 date and time"),
    ("clock without a time", _manifest(lambda m: m.update(clock="2026-01-01")), "is not an ISO 8601 date and time"),
    ("volatile columns of an unknown table", _manifest(lambda m: m.update(volatile_columns={"nope": ["x"]})),
     "volatile_columns names table 'nope', which the schema does not create (tables: books, holds, loans, members)"),
    ("volatile column that does not exist", _manifest(lambda m: m.update(volatile_columns={"books": ["a"]})),
     "volatile_columns of table 'books' names column(s) 'a', which it does not have"),
    ("seed rows that are strings", _seed(lambda s: s.update(books=["a"])),
     "seed.json: row 1 of table 'books' is a string; a row is an object of column values"),
    ("seed table that is an object", _seed(lambda s: s.update(books={"a": 1})),
     "seed.json: table 'books' must hold a list of row objects, got an object"),
    ("seed row that is a list", _seed(lambda s: s.update(books=[[1, 2]])), "row 1 of table 'books' is a list"),
    ("seed integer beyond 64 bits", _seed(lambda s: s["books"][0].update(published_year=2**70)),
     "column 'published_year' holds an integer beyond 64 bits"),
    ("env.json not UTF-8", _write("env.json", b"\xff\xfe{}"), "env.json is not UTF-8 text (byte 0)"),
    ("env.json nested 100k deep", _write("env.json", "[" * 100_000 + "]" * 100_000), "env.json nests too deeply to read"),
    ("schema.sql not UTF-8", _write("schema.sql", b"CREATE TABLE x (a);\xff"), "schema.sql is not UTF-8 text"),
    ("seed.json not UTF-8", _write("seed.json", b"\xff"), "seed.json is not UTF-8 text"),
    ("schema file outside the package", _manifest(lambda m: m.update(schema="../../../etc/passwd")),
     "'../../../etc/passwd' must be a file name inside the package folder"),
    ("absolute seed path", _manifest(lambda m: m.update(seed="/etc/hostname")), "must be a file name inside the package folder"),
    ("output schema $ref to nowhere", _manifest(lambda m: m["tools"][0].update(output_schema={"$ref": "#/nope"})),
     "tool 'search_books': its schemas cannot be compiled: Unresolvable ref"),
    ("input schema $ref to nowhere", _manifest(lambda m: m["tools"][1]["input_schema"].update({"$ref": "#/defs/x"})),
     "its schemas cannot be compiled"),
    ("tools.py that exits", _write("tools.py", "raise SystemExit(3)"), "tools.py failed to import: SystemExit: 3"),
    ("read_only as a word", _manifest(lambda m: m["tools"][0].update(read_only="yes")),
     "tools[0].read_only: Input should be a valid boolean"),
]


@pytest.mark.parametrize("label,mutate,says", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_package_gets_a_clear_package_error(tmp_path, label, mutate, says):
    package = tmp_path / "pkg"
    shutil.copytree(LIBRARY, package)
    mutate(package)
    with pytest.raises(EnvironmentPackageError) as err:
        Environment.load(package, trust=True)
    assert says in str(err.value), str(err.value)
    assert str(package) in str(err.value)


def test_a_symlink_out_of_the_package_is_refused(tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(LIBRARY, package)
    outside = tmp_path / "elsewhere.sql"
    outside.write_text((package / "schema.sql").read_text())
    (package / "schema.sql").unlink()
    (package / "schema.sql").symlink_to(outside)
    with pytest.raises(EnvironmentPackageError, match="resolves outside the package folder"):
        Environment.load(package, trust=True)


def test_validation_reports_the_package_error_not_a_library_error(tmp_path):
    from envfactory.envs.validation.validate import validate_package
    package = tmp_path / "pkg"
    shutil.copytree(LIBRARY, package)
    _seed(lambda s: s.update(books=["a"]))(package)
    report = validate_package(package, write_record=False)
    assert report.verdict == "FAIL" and "row 1 of table 'books' is a string" in report.verdict_line
    assert "AttributeError" not in report.model_dump_json()


def test_a_test_reference_that_leads_nowhere_says_where_it_stops(library_env):
    from envfactory.envs.validation.testcases import Case, run_case
    coverage = {name: {"success": False, "error": False} for name in library_env.tools}
    case = Case.model_validate({"name": "bad reference", "steps": [
        {"call": "get_book", "args": {"book_id": 1}, "save": "b", "expect": {"ok": True}},
        {"call": "get_book", "args": {"book_id": "$b.a"}, "expect": {"ok": True}}]})
    result = run_case(library_env, case, coverage)
    [failure] = result.failures
    assert failure.startswith("step 2 (get_book): reference '$b.a': $b is an object with keys ")
    assert failure.endswith("so it has no 'a'")


# ------------------------------------------------------------------ restore

NOT_SNAPSHOTS = [
    ("empty", b"", "0 bytes that are not an SQLite database"),
    ("text", b"hello world" * 100, "bytes that are not an SQLite database"),
    ("truncated", None, "SQLite"),
    ("header then garbage", b"SQLite format 3\x00" + b"\x00\x10" + b"\xff" * 4000, "SQLite"),
]


def _truncated(env) -> bytes:
    return env.initial_state[: len(env.initial_state) // 2]


@pytest.mark.parametrize("label,data,says", NOT_SNAPSHOTS, ids=[n[0] for n in NOT_SNAPSHOTS])
def test_restoring_bytes_that_are_not_a_snapshot_keeps_the_episode(library_env, label, data, says):
    ep = library_env.episode()
    assert ep.call("checkout_book", {"member_id": 1, "book_id": 2}).ok
    before, calls = ep.state_hash(), len(ep.calls)
    with pytest.raises(ValueError, match="not a snapshot of library") as err:
        ep.restore(Snapshot(_truncated(library_env) if data is None else data, None))
    assert says in str(err.value)
    assert ep.state_hash() == before and len(ep.diff().changes) == 2 and len(ep.calls) == calls
    assert ep.call("get_book", {"book_id": 2}).output["available_copies"] == 0  # still usable


def test_a_snapshot_of_another_environment_is_refused(library_env):
    other = Environment.load("commerce").episode().snapshot()
    ep = library_env.episode()
    with pytest.raises(ValueError, match="a database of another schema than library's"):
        ep.restore(other)
    assert ep.state_hash() == library_env.initial_hash
    with pytest.raises(ValueError, match="change log must map library's table names"):
        ep.restore(Snapshot(ep.snapshot().data, {"nope": {1}}))
    good = ep.snapshot()
    ep.restore(good)  # a real snapshot still restores
    assert ep.state_hash() == library_env.initial_hash


def test_ef_restore_refuses_what_is_not_a_snapshot_and_keeps_the_episode(library_env):
    from envfactory.envs.mcp import EpisodeControl, build_server, in_memory_session

    async def go():
        ep = library_env.episode()
        async with in_memory_session(build_server(library_env, episode=ep)) as session:
            ctl = EpisodeControl(session)
            await session.call_tool("checkout_book", {"member_id": 1, "book_id": 2})
            before = ep.state_hash()
            errors = []
            for args in ({"data": base64.b64encode(b"not a database").decode()},
                         {"data": "***not base64***"},
                         {"data": base64.b64encode(_truncated(library_env)).decode()},
                         {"data": base64.b64encode(ep.snapshot().data).decode(), "dirty": ["books"]},
                         {"data": base64.b64encode(ep.snapshot().data).decode(), "dirty": {"books": [[1]]}},
                         {"data": 42},
                         {}):
                res = await session.call_tool("_ef_restore", args)
                errors.append(res.content[0].text if res.isError else None)
                assert ep.state_hash() == before
            snap = await ctl.snapshot()
            restored = await ctl.restore(snap)
            usable = await session.call_tool("get_book", {"book_id": 2})
            return errors, before, restored, usable

    errors, before, restored, usable = asyncio.run(go())
    assert all(errors), errors
    assert "restore refused, the episode is unchanged: not a snapshot of library" in errors[0]
    assert "restore refused" in errors[1] and "restore refused" in errors[2]
    assert "'dirty' must map table names to lists of row ids" in errors[3]
    assert "restore refused" in errors[4]
    assert errors[5].startswith("restore needs the 'data' of a snapshot") and errors[6].startswith("restore needs")
    assert restored == before and not usable.isError


def test_a_pyclass_episode_keeps_its_state_when_the_restore_is_not_a_snapshot(tmp_path):
    from envfactory.envs.imports.importer import import_class
    imported = import_class(Path(__file__).parent / "fixtures" / "pyclass" / "parking_permits.py", tmp_path / "parking",
                            source="class")
    env = Environment.load(imported.package, trust=True)
    ep = env.episode()
    first = env.tool_specs[0].name
    before = ep.state_hash()
    for data in (b"\xff not json", b"[1, 2]", b'{"permits": 5}'):
        try:
            ep.restore(Snapshot(data, None))
        except ValueError as exc:
            assert "not a snapshot of" in str(exc)
        else:
            raise AssertionError(f"{data!r} was restored")
        assert ep.state_hash() == before
    assert ep.call(first, {}).ok
