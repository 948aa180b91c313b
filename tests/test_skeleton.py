"""The deterministic skeleton generator: spec in, a package out that passes the sandboxed validation.

Generated code is never imported here: packages are checked through ``validate_package`` (sandbox),
and schema/seed facts through plain SQLite.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from envfactory.envs.skeleton.package import (PACKAGE_FILES, SkeletonError, generate_package, generate_tests, quality_gaps,
                                     write_package)
from envfactory.envs.skeleton.spec import ApiSpec
from envfactory.envs.validation.validate import validate_package

SPECS_DIR = Path(__file__).parent / "fixtures" / "specs"
SPEC_FILES = sorted(SPECS_DIR.glob("*.json"))


def load_spec(path: Path) -> ApiSpec:
    return ApiSpec.model_validate_json(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def packages() -> dict[str, tuple[ApiSpec, dict[str, str]]]:
    return {p.stem: (load_spec(p), generate_package(load_spec(p))) for p in SPEC_FILES}


def seeded_db(files: dict[str, str]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(files["schema.sql"])
    for table, rows in json.loads(files["seed.json"]).items():
        for row in rows:
            cols = ", ".join(f'"{c}"' for c in row)
            conn.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(row))})', list(row.values()))
    return conn


def test_there_are_varied_fixture_specs():
    specs = [load_spec(p) for p in SPEC_FILES]
    assert len(specs) >= 3
    assert len({s.domain for s in specs}) >= 3
    kinds = {o.kind for s in specs for o in s.operations}
    assert kinds == {"create", "get", "list", "update", "delete", "transition"}
    assert any(o.lookup_by for s in specs for o in s.operations)
    assert any(f.references == e.name for s in specs for e in s.entities for f in e.fields)  # a self-reference


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_generated_package_passes_sandboxed_validation(path, tmp_path, packages):
    spec, files = packages[path.stem]
    assert sorted(files) == sorted(PACKAGE_FILES)
    write_package(files, tmp_path / spec.name)
    report = validate_package(tmp_path / spec.name, strict=True, write_record=False)
    assert report.verdict == "PASS", (report.verdict_line, [s.messages for s in report.stages])
    assert report.warnings == []  # the catalog quality bar holds (strict mode would fail otherwise)
    assert report.tools == len(spec.operations)
    assert report.paths_covered == report.paths_total == 2 * len(spec.operations)
    assert report.deterministic is True


def test_same_spec_and_seed_give_identical_files_and_another_seed_other_data():
    spec = load_spec(SPECS_DIR / "shop_orders.json")
    first, again, other = generate_package(spec), generate_package(spec, seed=0), generate_package(spec, seed=7)
    assert first == again
    assert other["seed.json"] != first["seed.json"]
    for name in ("schema.sql", "tools.py", "env.json"):  # the design does not depend on the seed
        assert other[name] == first[name]


def test_schema_backs_the_spec_with_constraints(packages):
    spec, files = packages["shop_orders"]
    sql = files["schema.sql"]
    assert sql.index('CREATE TABLE "customers"') < sql.index('CREATE TABLE "orders"') < sql.index('CREATE TABLE "order_lines"')
    assert '"customer_id" INTEGER PRIMARY KEY' in sql
    assert '"email" TEXT NOT NULL UNIQUE' in sql
    assert '"phone" TEXT,' in sql  # optional: nullable
    assert "CHECK (\"status\" IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled'))" in sql
    assert 'CHECK ("quantity" >= 1 AND "quantity" <= 50)' in sql
    assert 'FOREIGN KEY ("customer_id") REFERENCES "customers" ("customer_id")' in sql
    conn = seeded_db(files)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE orders SET status = 'lost' WHERE order_id = 1")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE order_lines SET quantity = 51 WHERE order_line_id = 1")


@pytest.mark.parametrize("name", [p.stem for p in SPEC_FILES])
def test_seed_rows_are_consistent_and_spread(name, packages):
    spec, files = packages[name]
    conn = seeded_db(files)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    clock = json.loads(files["env.json"])["clock"][:10]
    for e in spec.entities:
        rows = [dict(zip([d[0] for d in cur.description], r)) for cur in [conn.execute(f'SELECT * FROM "{e.table_name}"')]
                for r in cur.fetchall()]
        assert len(rows) == e.seed_rows
        for f in e.fields:
            values = [r[f.name] for r in rows]
            if f.unique:
                present = [v.lower() if isinstance(v, str) else v for v in values if v is not None]
                assert len(present) == len(set(present)), f"{e.name}.{f.name} repeats a value"
            if f.type == "enum" and e.seed_rows >= len(f.enum):
                assert set(values) - {None} == set(f.enum), f"{e.name}.{f.name} does not use every value"
            if f.type == "email":
                assert all(v is None or ("@" in v and "." in v.split("@")[1]) for v in values)
            if f.type in ("date", "datetime") and "birth" not in f.name:
                years = {int(v[:4]) for v in values if v}
                assert years <= set(range(int(clock[:4]) - 3, int(clock[:4]) + 2))
    for op in spec.operations:  # every transition has rows it applies to, and rows it refuses
        if op.kind == "transition":
            t = op.transition
            states = [r[0] for r in conn.execute(f'SELECT "{t.field}" FROM "{spec.entity(op.entity).table_name}"')]
            assert any(s in t.from_states for s in states)
            if set(spec.entity(op.entity).field(t.field).enum) - set(t.from_states):
                assert any(s is not None and s not in t.from_states for s in states)


def test_seed_values_look_real(packages):
    _, files = packages["shop_orders"]
    seed = json.loads(files["seed.json"])
    first = seed["customers"][0]
    local = first["email"].split("@")[0]
    assert local == first["full_name"].lower().replace(" ", ".")  # an email made from the person's name
    assert {p["name"] for p in seed["products"]} <= {"Green tea 100g", "Stoneware mug", "Cast iron teapot", "Bamboo whisk"}
    assert all(0.5 <= p["price"] <= 400 for p in seed["products"])


@pytest.mark.parametrize("name", [p.stem for p in SPEC_FILES])
def test_tests_cover_every_tool_and_check_state(name, packages):
    spec, files = packages[name]
    manifest = json.loads(files["env.json"])
    read_only = {t["name"]: t["read_only"] for t in manifest["tools"]}
    suite = json.loads(files["tests.json"])
    paths = {(s["call"], s["expect"]["ok"]) for c in suite["cases"] for s in c["steps"]}
    for op in spec.operations:
        assert (op.name, True) in paths and (op.name, False) in paths, op.name
    for case in suite["cases"]:
        for step in case["steps"]:
            if read_only[step["call"]]:
                continue
            if step["expect"]["ok"]:
                assert step.get("expect_state"), (case["name"], step["call"])
            else:
                assert step.get("expect_unchanged") is True, (case["name"], step["call"])


def test_generate_tests_works_from_spec_schemas_and_seed_alone(packages):
    spec, files = packages["clinic_visits"]
    manifest = json.loads(files["env.json"])
    seed = json.loads(files["seed.json"])
    assert generate_tests(spec, manifest, seed) == json.loads(files["tests.json"])
    assert generate_tests(spec, manifest["tools"], seed, clock=manifest["clock"]) == json.loads(files["tests.json"])
    with pytest.raises(ValueError, match="has no tool in the manifest"):
        generate_tests(spec, manifest["tools"][1:], seed)


def test_messages_name_entity_and_id(packages):
    _, files = packages["shop_orders"]
    wanted = [s["expect"].get("error_contains") for c in json.loads(files["tests.json"])["cases"] for s in c["steps"]]
    assert "order 999999 does not exist" in wanted
    assert "customer 999999 does not exist" in wanted
    assert any(w and w.startswith("customer 1 cannot be deleted") for w in wanted)
    assert "orders" in wanted  # the refusal names the referencing table
    assert any(w and " is " in w and w.startswith("order ") for w in wanted)  # a transition names the state


def test_manifest_describes_every_parameter(packages):
    spec, files = packages["maker_space"]
    tools = {t["name"]: t for t in json.loads(files["env.json"])["tools"]}
    for t in tools.values():
        for pname, schema in t["input_schema"]["properties"].items():
            assert schema["description"].strip(), (t["name"], pname)
    assert tools["list_members"]["read_only"] and tools["member_by_card"]["read_only"]
    assert not tools["join"]["read_only"]
    assert tools["list_members"]["maskable_arguments"] == ["limit"]
    assert tools["list_members"]["input_schema"]["properties"]["limit"]["maximum"] == 50
    assert set(tools["list_members"]["input_schema"]["properties"]) >= {"min_card_number", "max_card_number", "tier"}
    assert tools["join"]["input_schema"]["required"] == ["name", "card_number", "tier"]
    assert tools["join"]["input_schema"]["properties"]["email"]["format"] == "email"
    assert tools["member_by_card"]["input_schema"]["required"] == ["card_number"]
    manifest = json.loads(files["env.json"])
    assert [s["url"] for s in manifest["provenance"]] == [s.url for s in spec.sources]
    assert manifest["domain"] == spec.domain and manifest["description"] == spec.description


def test_generated_tests_catch_a_broken_rule(tmp_path, packages):
    """The tests are real: a tools.py whose transitions ignore their from-states fails validation."""
    spec, files = packages["shop_orders"]
    broken = dict(files)
    assert "    if row[column] not in allowed:\n" in broken["tools.py"]
    broken["tools.py"] = broken["tools.py"].replace("    if row[column] not in allowed:\n", "    if False:\n")
    write_package(broken, tmp_path / "broken")
    report = validate_package(tmp_path / "broken", write_record=False)
    assert report.verdict == "FAIL"
    assert any("pay_order refuses other states" in f for f in report.failures)


def _spec_dict(**changes) -> dict:
    raw = json.loads((SPECS_DIR / "shop_orders.json").read_text())
    for entity, field, key, value in changes.get("fields", []):
        e = next(e for e in raw["entities"] if e["name"] == entity)
        next(f for f in e["fields"] if f["name"] == field)[key] = value
    for op_name, key, value in changes.get("ops", []):
        next(o for o in raw["operations"] if o["name"] == op_name)[key] = value
    return raw


def test_a_spec_that_cannot_be_generated_says_why():
    raw = _spec_dict(ops=[("place_order", "fields", ["total"])],               # the customer reference is never given
                     fields=[("customer", "vip", "unique", True),              # a unique boolean for 50 rows
                             ("product", "price", "minimum", 500)])            # minimum above maximum
    with pytest.raises(SkeletonError) as info:
        generate_package(ApiSpec.model_validate(raw))
    message = str(info.value)
    assert "spec 'shop_orders' cannot be generated" in message
    assert "operation 'place_order': required field 'customer_id' is a reference" in message
    assert "unique field 'vip' allows only 2 values but 50 seed rows" in message
    assert "field 'price' has minimum 500.0 above maximum 400.0" in message
    assert len(info.value.problems) == 3


def test_reference_cycles_and_reserved_names_are_refused():
    raw = _spec_dict()
    raw["entities"][0]["fields"].append({"name": "favourite_order_id", "type": "integer", "references": "order",
                                         "description": "An order the customer likes"})
    with pytest.raises(SkeletonError, match="form a cycle"):
        generate_package(ApiSpec.model_validate(raw))
    raw = _spec_dict()
    raw["entities"][1]["fields"].append({"name": "class", "type": "string", "description": "Tax class"})
    with pytest.raises(SkeletonError, match="'class' is a reserved word"):
        generate_package(ApiSpec.model_validate(raw))


def test_write_package_writes_whole_files_and_refuses_escapes(tmp_path):
    target = tmp_path / "pkg"
    written = write_package({"env.json": "{}\n", "nested/notes.md": "hi\n"}, target)
    assert (target / "env.json").read_text() == "{}\n" and (target / "nested" / "notes.md").read_text() == "hi\n"
    assert len(written) == 2
    write_package({"env.json": '{"a": 1}\n'}, target)  # replaced whole
    assert (target / "env.json").read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in target.iterdir()) == ["env.json", "nested"]  # no temp files left behind
    for bad in ("../evil.py", "/etc/evil", "nested/../../evil", "", "..", "C:evil"):
        with pytest.raises(ValueError, match="refusing to write"):
            write_package({"ok.txt": "fine", bad: "x"}, target)
    assert not (target / "ok.txt").exists()  # nothing is written when one name is bad
    assert not (tmp_path / "evil.py").exists()
    os.symlink(tmp_path, target / "link")
    with pytest.raises(ValueError, match="outside"):
        write_package({"link/evil.py": "x"}, target)
    assert not (tmp_path / "evil.py").exists()


def test_small_seeds_still_give_every_tool_both_paths_and_gaps_are_reported(tmp_path):
    """With fewer rows than states, tests create the rows they need; a referenced entity keeps a row free
    to delete; the quality gaps predicted from the files are the ones the validator warns about."""
    raw = json.loads((SPECS_DIR / "shop_orders.json").read_text())
    for e, n in zip(raw["entities"], (1, 2, 3, 2)):
        e["seed_rows"] = n
    spec = ApiSpec.model_validate(raw)
    files = generate_package(spec)
    gaps = quality_gaps(spec, files)
    assert gaps == ["largest table has 3 rows, fewer than 50: raise seed_rows"]
    write_package(files, tmp_path / "tiny")
    report = validate_package(tmp_path / "tiny", write_record=False)
    assert report.verdict == "PASS", (report.verdict_line, report.failures)
    assert report.paths_covered == report.paths_total
    assert len(report.warnings) == len(gaps) and all(g.startswith(w) for w, g in zip(report.warnings, gaps))
    seed = json.loads(files["seed.json"])
    assert len(seed["customers"]) == 2 and {o["customer_id"] for o in seed["orders"]} == {1}
    statuses = [o["status"] for o in seed["orders"]]
    assert "pending" in statuses and "paid" in statuses  # pay_order and ship_order each find a row


def test_quality_gaps_name_what_the_spec_lacks(packages):
    spec, files = packages["shop_orders"]
    assert quality_gaps(spec, files) == []
    raw = json.loads((SPECS_DIR / "shop_orders.json").read_text())
    raw["operations"] = [o for o in raw["operations"] if o["name"] in ("get_product", "search_products")]
    small = ApiSpec.model_validate(raw)
    gaps = quality_gaps(small, generate_package(small))
    assert any(g.startswith("2 tools, fewer than 8") for g in gaps)
    assert any("2 get/list and 0 create/update/delete/transition" in g for g in gaps)
    assert any("longest dependent call chain" in g for g in gaps)


def test_a_transition_with_no_row_in_its_states_is_reached_through_others(tmp_path):
    raw = json.loads((SPECS_DIR / "shop_orders.json").read_text())
    raw["entities"] = [e for e in raw["entities"] if e["name"] != "order_line"]  # nothing refers to orders
    raw["operations"] = [o for o in raw["operations"] if o["entity"] != "order_line"]
    next(e for e in raw["entities"] if e["name"] == "order")["seed_rows"] = 1
    files = generate_package(ApiSpec.model_validate(raw))
    (order,) = json.loads(files["seed.json"])["orders"]
    assert order["status"] == "pending"  # the first state the spec's transitions leave from
    ship = next(c for c in json.loads(files["tests.json"])["cases"] if c["name"].startswith("ship_order moves"))
    assert [s["call"] for s in ship["steps"]] == ["pay_order", "ship_order"]
    write_package(files, tmp_path / "one_order")
    report = validate_package(tmp_path / "one_order", write_record=False)
    assert report.verdict == "PASS", (report.verdict_line, report.failures)
    assert report.paths_covered == report.paths_total


def test_one_to_one_references_get_distinct_parents_and_leave_one_free():
    def entity(name, n, *refs):
        fields = [{"name": "label", "type": "string", "description": "A label"}]
        fields += [{"name": f"{r}_id", "type": "integer", "references": r, "unique": True, "description": "Its parent"}
                   for r in refs]
        return {"name": name, "description": f"a {name}", "seed_rows": n, "fields": fields}
    raw = {"name": "chain_of_ones", "title": "t", "domain": "test", "description": "One-to-one references in a chain.",
           "sources": [{"title": "t", "url": "envfactory://t"}],
           "entities": [entity("account", 2), entity("profile", 50, "account"), entity("badge", 3, "profile")],
           "operations": [{"name": f"create_{n}", "kind": "create", "entity": n, "description": f"Create a {n} row."}
                          for n in ("account", "profile", "badge")]}
    files = generate_package(ApiSpec.model_validate(raw))
    seed = json.loads(files["seed.json"])
    assert seeded_db(files).execute("PRAGMA foreign_key_check").fetchall() == []
    for child, parent in (("profiles", "accounts"), ("badges", "profiles")):
        used = [r[parent[:-1] + "_id"] for r in seed[child]]
        assert len(used) == len(set(used))  # distinct parents
        assert len(seed[parent]) > len(used)  # a parent stays free for a new child
    # 'profile' asks for 50 rows but only the accounts' referable rows can have one; accounts grew to 3
    assert (len(seed["accounts"]), len(seed["profiles"])) == (3, 2)
    tests = json.loads(files["tests.json"])
    create_badge = next(c for c in tests["cases"] if c["name"] == "create_badge stores a new badge")
    assert create_badge["steps"][0]["args"]["profile_id"] not in [r["profile_id"] for r in seed["badges"]]


def _corpus_specs():
    from envfactory.data.corpus import default_corpus
    corpus = default_corpus()
    return [corpus.spec_for(s) for s in corpus.services]


@pytest.mark.parametrize("spec", _corpus_specs(), ids=lambda s: s.name)
def test_unique_text_values_never_carry_their_row_id(spec):
    """'new-checkout-flow 67' for row 67 looked synthetic and leaked the hidden id into every query
    that quoted it; made-distinct values use words instead."""
    import re
    rows = json.loads(generate_package(spec)["seed.json"])
    for entity in spec.entities:
        texts = {f.name: set(map(str, f.examples)) for f in entity.fields if f.unique and f.type in ("string", "text")}
        for row in rows[entity.table_name]:
            for name, examples in texts.items():
                if str(row[name]) in examples:
                    continue  # the spec's own example, used as written
                assert not re.search(rf"(^|[\s\-_.]){row[entity.id_field]}$", str(row[name])), (entity.name, name, row[name])


@pytest.mark.slow
@pytest.mark.parametrize("spec", _corpus_specs(), ids=lambda s: s.name)
def test_every_corpus_service_generates_a_package_that_validates(spec, tmp_path):
    write_package(generate_package(spec), tmp_path / spec.name)
    report = validate_package(tmp_path / spec.name, write_record=False)
    assert report.verdict == "PASS", report.verdict_line
    assert report.paths_covered == report.paths_total == 2 * len(spec.operations)


def test_spec_text_cannot_escape_into_code_or_sql(tmp_path):
    """A model-written spec is untrusted text: quotes and newlines in titles and descriptions stay text."""
    spec = json.loads((Path(__file__).parent / "fixtures" / "specs" / "shop_orders.json").read_text())
    marker = tmp_path / "ran"
    spec["title"] = f'Shop"""\nopen({str(marker)!r}, "w").write("x")\n"""'
    spec["entities"][0]["description"] = f'buyers\nATTACH DATABASE {str(tmp_path / "x.db")!r} AS x;\nCREATE TABLE x.t(a);'
    spec["operations"][0]["description"] = 'Ends with a quote: "'
    files = generate_package(ApiSpec.model_validate(spec))
    compile(files["tools.py"], "tools.py", "exec")
    write_package(files, tmp_path / "pkg")
    report = validate_package(tmp_path / "pkg", write_record=False)
    assert report.verdict == "PASS", report.verdict_line
    assert not marker.exists() and not (tmp_path / "x.db").exists()
    assert all(line.startswith("--") or "ATTACH" not in line for line in files["schema.sql"].splitlines())


def _library_lending():
    from envfactory.data.corpus import default_corpus
    return default_corpus().spec_for("library_lending")


def test_updates_refuse_a_finished_workflow_and_a_change_of_nothing():
    """Renewing a returned checkout, or setting the values a row already has, is a domain error: a write
    that reports success without changing anything teaches an agent that it did something."""
    files = generate_package(_library_lending())
    assert "FINAL_STATES = {'checkouts': {'status': ['returned']}" in files["tools.py"]
    case = next(c for c in json.loads(files["tests.json"])["cases"] if c["name"].startswith("renew_checkout refuses"))
    errors = {s["expect"]["error_contains"] for s in case["steps"]}
    assert "nothing to change" in errors
    assert any(e.endswith("is returned") for e in errors)
    assert all(s.get("expect_unchanged") for s in case["steps"])


def test_the_validator_flags_a_write_that_reports_success_and_changes_nothing(tmp_path):
    files = dict(generate_package(_library_lending()))
    assert "    _check_changes(ctx, 'checkouts'," in files["tools.py"]
    files["tools.py"] = files["tools.py"].replace("    _check_changes(ctx, 'checkouts',", "    0 and _check_changes(ctx, 'checkouts',")
    rows = json.loads(files["seed.json"])["checkouts"]
    returned = next(r for r in rows if r["status"] == "returned")
    # a case whose author expected the no-op renewal to succeed: the validator still refuses the package
    suite = {"cases": [{"name": "renew a returned checkout", "steps": [{
        "call": "renew_checkout", "args": {"checkout_id": returned["checkout_id"], "due_date": returned["due_date"]},
        "expect": {"ok": True}}]}]}
    files["tests.json"] = json.dumps(suite)
    write_package(files, tmp_path / "noop")
    report = validate_package(tmp_path / "noop", write_record=False)
    assert report.verdict == "FAIL"
    assert any("renew_checkout writes, reported success and changed nothing" in f for f in report.failures), report.failures
