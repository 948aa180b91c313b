"""Confirmed tool-graph edges are kept on disk: a later process gets the same graph without
executing chains, and any change to the package, the edges or the code confirms again."""
from __future__ import annotations

import json
import shutil

import pytest

from envfactory.envs.chains import confirm
from envfactory.envs.chains import graph_cache as toolgraph_cache
from envfactory.envs.runtime.environment import Environment
from envfactory.envs.runtime.packages import CATALOG_DIR
from envfactory.envs.chains.confirm import build_tool_graph


def _graph_json(tg) -> str:
    return json.dumps(tg.to_json(), sort_keys=True, default=str)


def _no_confirmation(*args, **kwargs):
    raise AssertionError("edges were confirmed again instead of read from the cache")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(toolgraph_cache.CACHE_DIR_VAR, str(tmp_path / "cache"))
    return tmp_path / "cache" / "toolgraph"


def test_a_second_build_reads_the_confirmed_edges_and_gets_the_same_graph(cache, library_env, monkeypatch):
    first = build_tool_graph([library_env])
    assert len(list(cache.glob("*.json"))) == 1 and first.edges(confirmed=True)
    monkeypatch.setattr(confirm, "confirm_edges", _no_confirmation)
    second = build_tool_graph([library_env])
    assert _graph_json(second) == _graph_json(first)


def test_a_changed_package_is_confirmed_again(cache, tmp_path, monkeypatch):
    package = tmp_path / "library-copy"
    shutil.copytree(CATALOG_DIR / "library", package)
    build_tool_graph([Environment.load(package, trust=True)])
    tools = package / "tools.py"
    tools.write_text(tools.read_text() + "\n# edited\n")  # same behaviour, other code: another key
    calls = []
    real = confirm.confirm_edges
    monkeypatch.setattr(confirm, "confirm_edges", lambda tg, **kw: calls.append(1) or real(tg, **kw))
    build_tool_graph([Environment.load(package, trust=True)])
    assert calls == [1] and len(list(cache.glob("*.json"))) == 2


def test_a_damaged_cache_file_is_ignored_and_rewritten(cache, library_env):
    want = _graph_json(build_tool_graph([library_env]))
    (stored,) = cache.glob("*.json")
    stored.write_text('{"not": "this graph"')
    assert _graph_json(build_tool_graph([library_env])) == want
    assert json.loads(stored.read_text())  # whole again


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch, library_env):
    monkeypatch.setenv(toolgraph_cache.CACHE_DIR_VAR, "off")
    assert toolgraph_cache.cache_dir() is None
    build_tool_graph([library_env])
    assert not any(tmp_path.rglob("*.json"))
