"""The one gold-call replay (data/reward.py) and the one environment cache QueryGen and the exports share."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from envfactory.data.exports import trl_env, turns, verl_task
from envfactory.data.exports.trl_env import environment_class
from envfactory.data.exports.verl_task import StateDriftError
from envfactory.data.reward import Call, GoldReplayError, replay_calls, replay_gold
from envfactory.envs.runtime import cache as env_cache
from envfactory.envs.runtime.errors import EnvironmentPackageError
from envfactory.envs.runtime.environment import Environment
from envfactory.graphs import querygen


def test_replay_routes_calls_and_names_the_call_that_fails(library_env):
    envs = {"library": library_env, "commerce": env_cache.load_env("commerce")}
    checkout = Call(name="checkout_book", arguments={"member_id": 3, "book_id": 1})  # no env: routed by tool name
    episodes = replay_calls(envs, [checkout])
    try:
        assert episodes["library"].state_hash() != library_env.initial_hash
        assert episodes["commerce"].state_hash() == envs["commerce"].initial_hash
        assert replay_gold(envs, [checkout]).final_hashes["library"] == episodes["library"].state_hash()
    finally:
        for ep in episodes.values():
            ep.close()
    bad = Call(name="return_book", arguments={"loan_id": 999999}, env="library")
    with pytest.raises(GoldReplayError, match=r"^earlier-turn gold call 2 return_book failed on replay"):
        replay_calls(envs, [checkout, bad], what="earlier-turn gold call")
    with pytest.raises(GoldReplayError, match="names environment 'elsewhere'"):
        replay_calls(envs, [Call(name="checkout_book", arguments={}, env="elsewhere")])
    assert issubclass(StateDriftError, GoldReplayError)  # one error type; drift is the verl rows' kind of it


def test_querygen_and_the_exports_share_one_environment_cache():
    assert all(m.load_env is env_cache.load_env for m in (querygen, verl_task, trl_env, turns))
    library = env_cache.load_env("library")
    assert querygen.load_env("library") is library and verl_task.load_env("library") is library
    assert environment_class("library")._environment is library
    assert env_cache.load_env(Path("library")) is library  # one object per name, str or Path
    with pytest.raises(EnvironmentPackageError, match="no-such-env"):
        env_cache.load_env("no-such-env")


def test_one_environment_cache_loads_a_name_once_under_concurrency(monkeypatch):
    loads = []
    real_load = Environment.load

    def slow_load(name, **kw):
        loads.append(str(name))
        time.sleep(0.05)  # long enough for every thread to ask while the first load runs
        return real_load(name, **kw)

    monkeypatch.setattr(Environment, "load", staticmethod(slow_load))
    cache = env_cache.load_env.cache
    loaded_before = dict(cache)
    cache.clear()
    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(env_cache.load_env, ["library", "commerce"] * 4))
    finally:  # the rest of the session keeps the objects it already holds elsewhere
        cache.clear()
        cache.update(loaded_before)
    assert sorted(loads) == ["commerce", "library"]
    assert len({id(e) for e in got[0::2]}) == 1 and len({id(e) for e in got[1::2]}) == 1
    assert got[0].name == "library" and got[1].name == "commerce"


def test_trl_reset_reports_an_earlier_turn_gold_call_that_no_longer_replays():
    env = environment_class("library")()
    prefix = json.dumps([{"name": "return_book", "arguments": {"loan_id": 999999}, "env": "library"}])
    env.reset(prompt=[{"role": "user", "content": "x"}], task_id="t", gold_calls="[]", prefix_calls=prefix)
    result = env._score()
    assert result.score is None and result.failure.startswith("earlier-turn gold call 1 return_book failed on replay")
