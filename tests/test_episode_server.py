"""Episode servers on Ray: environments hosted by actors for verl's agent loop and TRL's environment
classes; 512 concurrent episodes without state bleed, idle episodes released, and the same rewards
and loop records as in-process episodes."""
from __future__ import annotations

import asyncio
import json

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is part of dev")

from envfactory.data.exports import episode_client  # noqa: E402
from envfactory.data.exports.episode_client import EpisodeReleased, EpisodeServers, RemoteRollout  # noqa: E402
from envfactory.data.exports.episode_server import start_episode_servers, stop_episode_servers  # noqa: E402
from envfactory.data.exports.trl_env import environment_factories, make_reward_func, to_trl  # noqa: E402
from envfactory.data.exports.verl import to_verl  # noqa: E402
from envfactory.data.exports.verl_loop import EXTRA_FIELDS_KEY, EpisodeRollout, run_token_loop  # noqa: E402
from envfactory.data.exports.verl_task import VerlTask  # noqa: E402
from envfactory.data.records import TrajectoryRecord  # noqa: E402
from envfactory.envs.runtime.cache import load_env  # noqa: E402
from envfactory.graphs.querygen import QueryGenContext, make_graph  # noqa: E402
from envfactory.graphs.querygen.resources import run_records  # noqa: E402
from tests.seeds import kept_seeds  # noqa: E402


@pytest.fixture(scope="module")
def servers(local_ray):
    servers = start_episode_servers("test-episodes", servers=2)
    yield servers
    stop_episode_servers(servers)


@pytest.fixture(scope="module")
def records():
    out = make_graph().invoke({"envs": ["library"], "seeds": kept_seeds("library", 2, 2)},
                              context=QueryGenContext(rollouts=1))
    return [TrajectoryRecord.model_validate(r) for r in run_records(out)]


def _checkout(member: int) -> dict:
    return {"name": "checkout_book", "arguments": {"member_id": member, "book_id": 49}, "env": "library"}


_read = {"name": "get_book", "arguments": {"book_id": 49}, "env": "library"}


def test_512_concurrent_episodes_keep_their_own_state(servers):
    env = load_env("library")
    members = [1, 3, 23, 8]
    expected = {}
    for m in members:  # where one checkout of the book's only copy leads, in this process
        ep = env.episode()
        assert ep.call("checkout_book", _checkout(m)["arguments"]).ok
        expected[m] = ep.state_hash()
        ep.close()

    async def main():
        rows = [{"environment": "library", "task_id": f"t{i}", "prompt": [{"role": "user", "content": "borrow"}],
                 "gold_calls": json.dumps([_checkout(members[i % 4]), _read]), "prefix_calls": "[]",
                 "initial_state_hash": env.initial_hash} for i in range(512)]
        opened = await asyncio.gather(*(servers.areset(r) for r in rows))
        ids = [o["episode"] for o in opened]
        assert len(set(ids)) == 512 and not any(o["failure"] for o in opened)
        assert sum(s["episodes"] for s in servers.stats()) == 512  # all open at once, over both servers
        # every episode borrows the book's only copy: any bleed makes every later checkout fail
        replies = await asyncio.gather(*(servers.acall(e, "checkout_book", _checkout(members[i % 4])["arguments"])
                                         for i, e in enumerate(ids)))
        assert all("error" not in json.loads(r) for r in replies), replies[:3]
        books = await asyncio.gather(*(servers.acall(e, "get_book", {"book_id": 49}) for e in ids))
        assert {json.loads(b)["available_copies"] for b in books} == {0}
        scores = await asyncio.gather(*(servers.ascore(e) for e in ids))
        assert [s["score"] for s in scores] == [1.0] * 512
        assert all(s["state_hashes"] == {"library": expected[members[i % 4]]} for i, s in enumerate(scores))
        assert all(await asyncio.gather(*(servers.arelease(e) for e in ids)))
        return ids

    ids = asyncio.run(main())
    assert sum(s["episodes"] for s in servers.stats()) == 0
    with pytest.raises(EpisodeReleased, match="not open on this server"):
        servers.call(ids[0], "get_book", {"book_id": 49})


def test_an_idle_episode_is_released_after_the_timeout(servers):
    import time
    quick = start_episode_servers("test-episodes-quick", servers=1, idle_timeout=0.3, num_cpus=0)
    try:
        episode = quick.reset({"environment": "library", "gold_calls": "[]"})["episode"]
        assert "book_id" in quick.call(episode, "get_book", {"book_id": 49})
        time.sleep(0.6)  # its rollout worker died, say: nobody releases it
        with pytest.raises(EpisodeReleased, match="idle for more than 0.3 s"):
            quick.call(episode, "get_book", {"book_id": 49})
        assert quick.stats()[0]["released_idle"] == 1
    finally:
        stop_episode_servers(quick)


def test_trl_classes_on_servers_score_as_in_process_ones(servers, records):
    rows = [row for record in records for row in to_trl(record)]
    local, remote = environment_factories(["library"]), environment_factories(["library"], servers="test-episodes")
    reward = make_reward_func()
    for row in rows:
        columns = {k: v for k, v in row.items() if k != "environment"}
        here, there = local["library"](), remote["library"]()
        assert here.reset(**columns) == there.reset(**columns)
        for call in json.loads(row["gold_calls"]):
            assert getattr(here, call["name"])(**call["arguments"]) == getattr(there, call["name"])(**call["arguments"])
        assert reward(environments=[here]) == reward(environments=[there]) == [1.0]
        assert [c.tool for c in there._calls()] == [c.tool for c in here._calls()]
    assert there.get_book(book_id=10**6) == here.get_book(book_id=10**6)  # errors read the same too
    del there  # an instance TRL drops takes its episode with it
    import time
    deadline = time.time() + 10
    while sum(s["episodes"] for s in servers.stats()) and time.time() < deadline:
        time.sleep(0.05)
    assert sum(s["episodes"] for s in servers.stats()) == 0
    with pytest.raises(LookupError, match="no envfactory episode servers named 'nobody'"):
        EpisodeServers.connect("nobody")


class _CharTokenizer:
    eos_token_id = 0

    def apply_chat_template(self, messages, tools=None, add_generation_prompt=False, tokenize=True, **kw):
        return [ord(c) for c in json.dumps(messages)]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_the_verl_loop_gives_the_same_record_on_servers(servers, records, monkeypatch):
    row = next(r for record in records for r in to_verl(record))
    gold = json.loads(row["reward_model"]["ground_truth"])
    text = "".join(f"<tool_call>{json.dumps({'name': c['name'], 'arguments': c['arguments']})}</tool_call>" for c in gold)

    def script():
        replies = [text, "Done."]

        async def generate(ids):
            return [ord(c) for c in replies.pop(0)]
        return generate

    local = asyncio.run(run_token_loop(EpisodeRollout(VerlTask.from_extra_info(row["extra_info"]),
                                                      gold=row["reward_model"]["ground_truth"]),
                                       row["prompt"], _CharTokenizer(), script(), response_length=100_000))
    monkeypatch.setenv(episode_client.SERVERS_VAR, "test-episodes")  # what a verl job sets for its agent loop

    async def remote_run():
        rollout = await RemoteRollout.open(episode_client.servers_from_environment(), row["extra_info"],
                                           row["reward_model"]["ground_truth"])
        return await run_token_loop(rollout, row["prompt"], _CharTokenizer(), script(), response_length=100_000)

    remote = asyncio.run(remote_run())
    assert remote == local and local["extra_fields"][EXTRA_FIELDS_KEY]["failure"] is None
    assert sum(s["episodes"] for s in servers.stats()) == 0  # finish released it
