"""Fidelity of imported classes: random call sequences (valid and invalid arguments) on each fixture
class, made directly on the class and through an envfactory episode, compared call by call: the
same outputs, the same exceptions, the same state afterwards (private state, sets, tuples, object
trees and dict keys that change included), across snapshots and restores."""
from __future__ import annotations

import copy
import inspect
import json
import random
from pathlib import Path

import pytest

from envfactory.envs import Environment
from envfactory.envs.imports.importer import import_class
from envfactory.envs.imports.pyclass import load_state, to_json
from envfactory.envs.imports.source import exec_class_file, import_from_root

FIXTURES = Path(__file__).parent / "fixtures" / "pyclass"
CLASSES = ["tag_library.py", "file_tree.py", "raffle.py", "park_finder.py", "mcp_notes.py", "bakery/shop.py",
           "flat/inventory.py", "weather_http.py"]
SEQUENCES, CALLS = 25, 30
JUNK = ["", "x", "zzz", 0, -1, 3, 2.5, True, None, [1], {"a": 1}]


def deep(value, stack=()):
    """A comparable picture of everything an object holds (private attributes and RNG state included)."""
    if id(value) in stack:
        return "<cycle>"
    stack = (*stack, id(value))
    if isinstance(value, random.Random):
        return ("Random", value.getstate())
    if isinstance(value, dict):
        return ("dict", tuple(sorted(((repr(k), deep(v, stack)) for k, v in value.items()), key=repr)))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(deep(v, stack) for v in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, frozenset(deep(v, stack) for v in value))
    if hasattr(value, "__dict__") and not isinstance(value, type) and not callable(value):
        return (type(value).__name__, deep(vars(value), stack))
    return value


class Direct:
    """The class (or the MCP server module) called as its authors would."""

    def __init__(self, path: Path, package: Path, env: Environment):
        manifest = env.manifest
        if manifest.pyclass.module:
            self.module = import_from_root(path.parent.parent if (path.parent / "__init__.py").is_file() else path.parent,
                                           manifest.pyclass.module)
        else:
            self.module = exec_class_file(path)
        self.cls, self.manifest, self.package = getattr(self.module, manifest.class_name), manifest, package
        self.mcp = manifest.pyclass.instance_global
        self.reset()

    def reset(self):
        self.instance = self.cls()
        if self.manifest.pyclass.initial == "scenario":
            load_state(self.instance, json.loads((self.package / self.manifest.seed).read_text()))
        if self.mcp:
            setattr(self.module, self.mcp, self.instance)

    def function(self, name: str):
        return getattr(self.module if self.mcp else self.instance, name)

    def call(self, name: str, args: dict):
        fn = self.function(name)
        try:
            inspect.signature(fn).bind(**args)
        except TypeError:
            return ("refused",)
        try:
            return ("ok", to_json(fn(**copy.deepcopy(args))))
        except Exception as exc:
            return ("error", str(exc) or type(exc).__name__)

    def state(self):
        return deep(self.instance)

    def snapshot(self):
        return copy.deepcopy(self.instance)

    def restore(self, saved):
        self.instance = copy.deepcopy(saved)
        if self.mcp:
            setattr(self.module, self.mcp, self.instance)


def _values(state) -> list:
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend(list(node)[:20])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, (str, int)) and not isinstance(node, bool):
            found.append(node)
    walk(state)
    return found[:200]


def draw_arguments(rng: random.Random, spec, state) -> dict:
    props, required = spec.input_schema.get("properties", {}), spec.input_schema.get("required", [])
    pool = _values(state) + ["/", "/docs", "/docs/readme.txt", "/docs/new", "/tmp"]
    args = {}
    for name in props:
        if name in required or rng.random() < 0.4:
            args[name] = rng.choice(pool) if rng.random() < 0.75 else rng.choice(JUNK)
    if required and rng.random() < 0.08:
        args.pop(rng.choice(required), None)
    if rng.random() < 0.05:
        args["unexpected"] = 1
    return args


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("fidelity")
    packages = {}
    for rel in CLASSES:
        report = import_class(FIXTURES / rel, out / Path(rel).stem, explore=False)
        packages[rel] = report.package
    return packages


@pytest.mark.parametrize("rel", CLASSES)
def test_calls_through_an_episode_match_calls_on_the_class(imported, rel):
    package = imported[rel]
    env = Environment.load(package, trust=True)
    specs = env.tool_specs
    compared = {"ok": 0, "error": 0, "refused": 0}
    for seq in range(SEQUENCES):
        rng = random.Random(f"{rel}:{seq}")
        direct, ep = Direct(FIXTURES / rel, package, env), env.episode()
        assert direct.state() == deep(ep.instance), "the initial states differ"
        saved = None
        for step in range(CALLS):
            spec = rng.choice(specs)
            args = draw_arguments(rng, spec, ep.state_json())
            expected = direct.call(spec.name, args)
            got = ep.call(spec.name, args)
            where = f"{rel} sequence {seq} call {step}: {spec.name}({json.dumps(args)})"
            compared[expected[0]] += 1
            if expected[0] == "ok":
                assert got.ok and got.output == expected[1], where
            elif expected[0] == "error":
                assert (got.error_kind, got.error) == ("domain", expected[1]), where
            else:
                assert got.error_kind == "invalid_arguments", where
            assert direct.state() == deep(ep.instance), f"state after {where}"
            # the view follows the rows a call reached: its hash and diff equal those of the whole state
            assert ep.state_hash() == env.hash_of(ep._state_bytes()), where
            full = env.diff_states(ep.base_state, ep._state_bytes())
            assert sorted(map(repr, ep.diff().changes)) == sorted(map(repr, full.changes)), where
            if rng.random() < 0.04:
                direct.reset()
                ep.reset()  # undoes only what the episode reached
                assert direct.state() == deep(ep.instance) and ep.state_hash() == env.initial_hash, where
                saved = None
                continue
            if saved is None and rng.random() < 0.1:
                saved = (direct.snapshot(), ep.snapshot())
            elif saved is not None and rng.random() < 0.1:
                direct.restore(saved[0])
                ep.restore(saved[1])
                assert direct.state() == deep(ep.instance), f"state after restoring, {where}"
                saved = None
    assert compared["ok"] > 0 and compared["error"] > 0, compared  # both paths were exercised


def test_sets_tuples_and_objects_keep_their_types(imported):
    env = Environment.load(imported["tag_library.py"], trust=True)
    ep = env.episode()
    ep.call("tag_book", {"book_id": "b2", "tag": "old"})
    assert isinstance(ep.instance.tags, set) and isinstance(ep.instance.books["b2"]["tags"], set)
    ep.call("move_to", {"x": 1, "y": 2})
    assert ep.instance.location == (1, 2)
    ep.call("rename_shelf", {"old": "A", "new": "Z"})
    ep.call("set_field", {"book_id": "b1", "field": "isbn", "value": "123"})
    changes = {(c.table, c.key, c.kind, tuple(c.columns)) for c in ep.diff().changes}
    assert ("shelves", "A", "delete", ()) in changes and ("shelves", "Z", "insert", ()) in changes
    assert ("books", "b1", "update", ("isbn",)) in changes
    tree = Environment.load(imported["file_tree.py"], trust=True).episode()
    assert tree.call("mkdir", {"path": "/docs/old"}).ok and type(tree.instance.root.children["docs"]).__name__ == "Node"
    assert tree.call("ls", {"path": "/docs"}).output == ["old", "readme.txt"]
    assert tree.state_json()["root"]["children"]["docs"]["parent"] == "<cycle>"  # a reference back up the tree


def test_a_private_generator_continues_as_in_the_class(imported):
    env = Environment.load(imported["raffle.py"], trust=True)
    ep = env.episode()
    poor = ep.call("buy_ticket", {"owner": "cy"})  # debits before it raises: the class keeps the debt
    assert poor.error == "cy cannot afford 2" and ep.instance.wallets["cy"] == -2
    direct = exec_class_file(FIXTURES / "raffle.py").Raffle()
    with pytest.raises(ValueError):
        direct.buy_ticket("cy")
    assert ep.call("buy_ticket", {"owner": "ann"}).output == direct.buy_ticket("ann")  # the same next number


def test_a_call_converts_only_the_rows_it_reached(imported):
    ep = Environment.load(imported["raffle.py"], trust=True).episode()
    assert type(ep.instance.wallets).__name__ == "TrackedDict" and isinstance(ep.instance.wallets, dict)
    ticket = ep.call("buy_ticket", {"owner": "ann"}).output["ticket"]
    assert ep.view.reached == {"wallets": {"ann"}, "tickets": {ticket}}
    assert {(c.table, c.key) for c in ep.diff().changes} == {("wallets", "ann"), ("tickets", ticket)}
    ep.reset()
    assert ep.instance.wallets == {"ann": 10, "bob": 3, "cy": 0} and ep.instance.tickets == {} and ep.view.reached == {}


def test_dicts_that_something_else_refers_to_are_not_swapped(tmp_path):
    src = tmp_path / "alias.py"
    src.write_text('class Alias:\n    def __init__(self):\n        self.items = {"a": 1}\n        self.same = self.items\n\n'
                   '    def put(self, key: str, value: int) -> int:\n        """Put a value."""\n'
                   '        self.items[key] = value\n        return len(self.same)\n')
    ep = Environment.load(import_class(src, tmp_path / "out", explore=False).package, trust=True).episode()
    assert ep.instance.items is ep.instance.same and type(ep.instance.items) is dict
    assert ep.call("put", {"key": "b", "value": 2}).output == 2 and ep.state_json()["same"] == {"a": 1, "b": 2}
    ep.reset()
    assert ep.instance.items is ep.instance.same and ep.instance.same == {"a": 1}
