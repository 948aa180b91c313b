"""The episode contract: isolation, transactions, errors, snapshot/restore, diff and hash."""
from __future__ import annotations

import json
import shutil
import threading

import pytest

from envfactory.envs import Environment, EnvironmentPackageError, UntrustedCodeError
from envfactory.envs.runtime.trust import package_digest
from envfactory.envs.runtime.state import rows_by_rowid


def test_episodes_are_isolated(library_env):
    a, b = library_env.episode(), library_env.episode()
    assert a.call("checkout_book", {"member_id": 1, "book_id": 2}).ok
    assert a.state_hash() != library_env.initial_hash
    assert b.state_hash() == library_env.initial_hash
    assert b.call("get_book", {"book_id": 2}).output["available_copies"] == 1
    assert a.call("get_book", {"book_id": 2}).output["available_copies"] == 0


def test_concurrent_episodes_do_not_bleed(library_env):
    errors, hashes = [], {}

    def work(i):
        ep = library_env.episode(episode_id=f"e{i}")
        book = 1 + (i % 4) * 2  # books 1, 3, 5(no copy), 7
        res = ep.call("checkout_book", {"member_id": 3 + (i % 3), "book_id": book})
        if book == 5 and res.ok or book != 5 and not res.ok:
            errors.append((i, res.error))
        hashes[i] = (book, ep.state_hash(), len(ep.diff().changes))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(24)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    for i, (book, h, n) in hashes.items():
        assert n == (0 if book == 5 else 2)  # a loan insert and a books update, nothing from other threads


def test_failed_write_rolls_back(library_env):
    ep = library_env.episode()
    ep.call("checkout_book", {"member_id": 3, "book_id": 1})
    before = ep.state_hash()
    # return_book updates the loan first, then fails on a later rule? Use a tool whose check comes after a write:
    # checkout for a member at the limit fails before writing, so force a mid-call failure through the context.
    res = ep.call("return_book", {"loan_id": 424242})
    assert not res.ok and res.error_kind == "domain" and "loan 424242 does not exist" in res.error
    assert ep.state_hash() == before


def test_mid_call_exception_after_write_is_rolled_back(tmp_path):
    pkg = tmp_path / "lib2"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    tools = (pkg / "tools.py").read_text()
    # a renew that writes and then raises: the write must not survive
    tools = tools.replace('    return ctx.get("loans", loan_id, "loan")\n\n\ndef place_hold',
                          '    raise RuntimeError("boom after write")\n\n\ndef place_hold')
    (pkg / "tools.py").write_text(tools)
    env = Environment.load(pkg, trust=True)
    ep = env.episode()
    loan = ep.call("checkout_book", {"member_id": 3, "book_id": 1}).output
    before = ep.state_hash()
    res = ep.call("renew_loan", {"loan_id": loan["loan_id"]})
    assert res.error_kind == "internal" and "boom after write" in res.error
    assert ep.state_hash() == before


def test_read_only_tool_that_writes_is_rolled_back(tmp_path):
    pkg = tmp_path / "lib3"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    tools = (pkg / "tools.py").read_text().replace(
        'def get_book(ctx, book_id):\n',
        'def get_book(ctx, book_id):\n    ctx.execute("UPDATE books SET title = \'x\' WHERE book_id = ?", (book_id,))\n')
    (pkg / "tools.py").write_text(tools)
    ep = Environment.load(pkg, trust=True).episode()
    res = ep.call("get_book", {"book_id": 1})
    assert res.error_kind == "read_only_violation"
    assert ep.diff().is_empty


@pytest.mark.parametrize("args,kind,fragment", [
    ({"member_id": "seven", "book_id": 1}, "invalid_arguments", "argument 'member_id' must be integer"),
    ({"book_id": 1}, "invalid_arguments", "must contain ['member_id']"),
    ({"member_id": 1, "book_id": 1, "extra": True}, "invalid_arguments", "must not contain {'extra'}"),
    ('{"member_id": 1,', "invalid_arguments", "not valid JSON"),
    (["member_id", 1], "invalid_arguments", "expected a JSON object"),
])
def test_argument_errors_are_precise(library_env, args, kind, fragment):
    res = library_env.episode().call("checkout_book", args)
    assert (res.ok, res.error_kind) == (False, kind)
    assert fragment in res.error


def test_unknown_tool_lists_available(library_env):
    res = library_env.episode().call("drop_tables", {})
    assert res.error_kind == "unknown_tool"
    assert "checkout_book" in res.error and "drop_tables" in res.error


def test_outputs_are_json_and_lists_are_arrays(library_env):
    res = library_env.episode().call("search_books", {"genre": "poetry"})
    parsed = json.loads(res.text)
    assert isinstance(parsed["books"], list) and parsed["total"] == len(parsed["books"]) or parsed["total"] > 10


def test_snapshot_restore_and_reset(library_env):
    ep = library_env.episode()
    ep.call("checkout_book", {"member_id": 3, "book_id": 1})
    snap = ep.snapshot()
    h1 = ep.state_hash()
    ep.call("checkout_book", {"member_id": 3, "book_id": 3})
    assert ep.state_hash() != h1
    ep.restore(snap)
    assert ep.state_hash() == h1
    assert ep.diff().summary() == {"books": {"insert": 0, "update": 1, "delete": 0},
                                   "loans": {"insert": 1, "update": 0, "delete": 0}}
    ep.reset()
    assert ep.state_hash() == library_env.initial_hash and ep.diff().is_empty


def test_reset_to_a_given_state_makes_it_the_base(library_env):
    ep = library_env.episode()
    ep.call("checkout_book", {"member_id": 3, "book_id": 1})
    mid = ep.snapshot()
    other = library_env.episode(state=mid)
    assert other.diff().is_empty and other.state_hash() == ep.state_hash()
    other.call("cancel_hold", {"hold_id": 1})
    assert [c.kind for c in other.diff().changes] == ["update"]


def test_cell_diff_and_full_diff_agree(library_env):
    ep = library_env.episode()
    loan = ep.call("checkout_book", {"member_id": 3, "book_id": 1}).output
    ep.call("renew_loan", {"loan_id": loan["loan_id"]})
    ep.call("cancel_hold", {"hold_id": 2})
    fast = ep.diff()
    full = library_env.diff_states(library_env.initial_state, ep.snapshot())
    assert sorted(fast.cells(), key=repr) == sorted(full.cells(), key=repr)
    kinds = {(c.table, c.kind) for c in fast.changes}
    assert kinds == {("books", "update"), ("loans", "insert"), ("holds", "update")}
    hold = next(c for c in fast.changes if c.table == "holds")
    assert hold.columns == ["status"] and hold.before["status"] == "waiting" and hold.after["status"] == "cancelled"


def test_insert_cells_ignore_generated_ids(library_env):
    a, b = library_env.episode(), library_env.episode()
    a.call("checkout_book", {"member_id": 3, "book_id": 1}); a.call("checkout_book", {"member_id": 4, "book_id": 3})
    b.call("checkout_book", {"member_id": 4, "book_id": 3}); b.call("checkout_book", {"member_id": 3, "book_id": 1})
    assert a.state_hash() != b.state_hash()  # the loans got different ids
    assert sorted(a.diff().cells(), key=repr) == sorted(b.diff().cells(), key=repr)


def test_volatile_columns_are_excluded(tmp_path):
    pkg = tmp_path / "lib4"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    manifest = json.loads((pkg / "env.json").read_text())
    manifest["volatile_columns"] = {"loans": ["checked_out_on"]}
    (pkg / "env.json").write_text(json.dumps(manifest))
    env = Environment.load(pkg, trust=True)
    ep = env.episode()
    ep.conn.execute("UPDATE loans SET checked_out_on = '1999-01-01' WHERE loan_id = 1")
    assert ep.state_hash() == env.initial_hash and ep.diff().is_empty


def test_diff_and_undo_bases_come_from_one_scan_of_the_initial_state(tmp_path, monkeypatch):
    pkg = tmp_path / "lib5"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    manifest = json.loads((pkg / "env.json").read_text())
    manifest["volatile_columns"] = {"loans": ["checked_out_on"]}  # the diff base leaves these out, undo keeps them
    (pkg / "env.json").write_text(json.dumps(manifest))
    env = Environment.load(pkg, trust=True)
    scratch, scans = env._scratch, []
    monkeypatch.setattr(env, "_scratch", lambda data: scans.append(data) or scratch(data))
    diff_base, (undo_base, _) = env.initial_rows, env._initial_full_rows
    assert scans == [env.initial_state]
    conn = scratch(env.initial_state)
    try:
        assert diff_base == rows_by_rowid(conn, env.tables)  # what a scan of its own gives
    finally:
        conn.close()
    assert "checked_out_on" not in diff_base["loans"][1][1] and len(undo_base["loans"][1]) == len(env.tables["loans"].columns)


def test_hash_is_canonical_across_loads(library_env):
    again = Environment.load(library_env.package_dir)
    assert again.initial_hash == library_env.initial_hash


def test_untrusted_package_is_refused_until_the_user_trusts_it(tmp_path):
    from envfactory.envs.runtime.trust import grant_trust
    pkg = tmp_path / "lib5"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    with pytest.raises(UntrustedCodeError, match="envs trust"):
        Environment.load(pkg)
    (pkg / "verified.json").write_text(json.dumps({"digest": package_digest(pkg)}))  # grants nothing
    with pytest.raises(UntrustedCodeError):
        Environment.load(pkg)
    grant_trust(pkg)
    assert Environment.load(pkg).name == "library"
    (pkg / "tools.py").write_text((pkg / "tools.py").read_text() + "\n# edited\n")
    with pytest.raises(UntrustedCodeError):
        Environment.load(pkg)


@pytest.mark.parametrize("mutate,fragment", [
    (lambda p: (p / "env.json").write_text("{not json"), "env.json is not valid JSON"),
    (lambda p: _edit_manifest(p, lambda m: m["tools"][0]["input_schema"]["properties"]["query"].pop("description")),
     "parameter 'query' has no description"),
    (lambda p: _edit_manifest(p, lambda m: m["tools"].append(dict(m["tools"][0]))), "duplicate tool names"),
    (lambda p: _edit_manifest(p, lambda m: m["tools"][0].update(name="ghost_tool")),
     "defines no function of that name"),
    (lambda p: (p / "schema.sql").write_text("CREATE TABLE broken ("), "schema.sql does not execute"),
    (lambda p: (p / "seed.json").write_text(json.dumps({"nope": [{"a": 1}]})), "which schema.sql does not create"),
    (lambda p: (p / "tools.py").write_text("raise ImportError('no such lib')"), "tools.py failed to import"),
    (lambda p: _edit_seed(p, lambda s: s["loans"].append(dict(s["loans"][0], loan_id=999, book_id=5000))),
     "foreign-key violations"),
])
def test_broken_packages_give_specific_errors(tmp_path, mutate, fragment):
    pkg = tmp_path / "broken"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    mutate(pkg)
    with pytest.raises(EnvironmentPackageError) as err:
        Environment.load(pkg, trust=True)
    assert fragment in str(err.value)


def _edit_manifest(pkg, fn):
    m = json.loads((pkg / "env.json").read_text())
    fn(m)
    (pkg / "env.json").write_text(json.dumps(m))


def _edit_seed(pkg, fn):
    s = json.loads((pkg / "seed.json").read_text())
    fn(s)
    (pkg / "seed.json").write_text(json.dumps(s))


def test_validation_does_not_rewrite_arguments(library_env):
    args = {"genre": "poetry"}
    res = library_env.episode().call("search_books", args)
    assert res.ok and args == {"genre": "poetry"} and res.arguments == {"genre": "poetry"}


def test_excludes_matcher():
    from envfactory.envs.validation.testcases import match
    assert match({"$excludes": {"id": 3}}, [{"id": 1}, {"id": 2}]) == []
    assert match({"$excludes": {"id": 2}}, [{"id": 1}, {"id": 2}]) != []
