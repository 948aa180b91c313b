"""The one gold-call replay (data/reward.py) and the one environment cache the exports share."""
from __future__ import annotations

import json

import pytest

from envfactory.data.exports import env_cache, verl_task
from envfactory.data.exports.trl_env import environment_class
from envfactory.data.exports.verl_task import StateDriftError
from envfactory.data.reward import Call, GoldReplayError, replay_calls, replay_gold


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


def test_exports_share_one_environment_cache():
    assert verl_task.load_env is env_cache.load_env
    assert env_cache.load_env("library") is env_cache.load_env("library")
    assert environment_class("library")._environment is env_cache.load_env("library")


def test_trl_reset_reports_an_earlier_turn_gold_call_that_no_longer_replays():
    env = environment_class("library")()
    prefix = json.dumps([{"name": "return_book", "arguments": {"loan_id": 999999}, "env": "library"}])
    env.reset(prompt=[{"role": "user", "content": "x"}], task_id="t", gold_calls="[]", prefix_calls=prefix)
    result = env._score()
    assert result.score is None and result.failure.startswith("earlier-turn gold call 1 return_book failed on replay")
