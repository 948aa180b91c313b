"""What QueryGen's throughput work must not break: reused episode connections still log every
change (and reset episodes too), concurrent rollouts of one chain on pooled MCP sessions never
share state, the cached output validator still rejects bad tool results, and the one-node chain
step gives the same records as the per-step graph."""
from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from envfactory.agents.query_agent import split_turns, template_queries
from envfactory.agents.rollout_agent import model_rollout
from envfactory.data.reward import Call, replay_gold, score_episodes
from envfactory.envs.mcp import EpisodeSessionPool, ValidatingClientSession, in_memory_session
from envfactory.envs.runtime.environment import Environment
from envfactory.envs.chains.sampling import GoldTrajectory
from envfactory.graphs import querygen
from envfactory.graphs.querygen import QueryGenContext, make_chain_graph, make_graph
from envfactory.graphs.querygen.resources import _sampler
from envfactory.graphs.querygen.nodes import process_chain
from envfactory.graphs.querygen.steps import _user_turns
from tests.doubles import ScriptedChatModel, tool_call_message


@pytest.fixture(scope="module")
def chain() -> GoldTrajectory:
    sampler = _sampler(("library",), 1)
    for seed in range(3, 60):
        t = sampler.sample(seed)
        if isinstance(t, GoldTrajectory) and sum(not c.read_only for c in t.calls) >= 1 and len(t.calls) >= 3:
            return t
    raise AssertionError("no chain with a write")


def test_reset_and_reused_episodes_still_log_every_change(library_env):
    fresh = library_env.episode()
    fresh.call("checkout_book", {"member_id": 21, "book_id": 7})
    want = fresh.diff().cells()
    assert want
    fresh.reset()  # the episode's own connection, new state: its triggers must still fire
    assert fresh.diff().is_empty and fresh.state_hash() == library_env.initial_hash
    fresh.call("checkout_book", {"member_id": 21, "book_id": 7})
    assert fresh.diff().cells() == want
    fresh.close()
    assert fresh.conn is None  # a closed episode cannot reach a connection another episode now uses
    for _ in range(3):
        ep = library_env.episode()
        assert ep.diff().is_empty and ep.state_hash() == library_env.initial_hash and not ep.calls
        ep.call("checkout_book", {"member_id": 21, "book_id": 7})
        assert ep.diff().cells() == want
        assert ep.state_hash() != library_env.initial_hash
        ep.close()


def test_connection_with_extra_temp_objects_is_not_reused(library_env):
    ep = library_env.episode()
    ep.call("get_book", {"book_id": 1})
    ep.conn.execute("CREATE TEMP TABLE scratch(x)")
    conn = ep.conn
    ep.close()
    assert conn not in library_env._idle_connections


def _solver(chain, turns, latency):
    script = []
    for idx in turns:
        script += [tool_call_message(chain.calls[i].tool, chain.calls[i].arguments) for i in idx]
        script.append("Done.")
    return ScriptedChatModel(script=script, latency=latency)


def test_concurrent_rollouts_of_one_chain_never_share_state(chain):
    env = Environment.load("library")
    envs = {"library": env}
    turn_idx = split_turns(chain, chain.seed)
    queries = template_queries(chain, turn_idx, {t.name: t.description for t in env.tool_specs})
    turns = _user_turns(chain, {"turns": turn_idx, "queries": queries})
    gold = replay_gold(envs, [Call(name=c.tool, arguments=c.arguments, masked=c.masked_arguments, env=c.env)
                              for c in chain.calls])

    async def run_all():
        pool = EpisodeSessionPool(env)
        sessions = {"library": pool}
        waves = []
        for _ in range(2):  # the second wave reuses the first wave's sessions
            solvers = [model_rollout(envs, turns, _solver(chain, turn_idx, 0.002 * (i % 3)), "sys", sessions=sessions)
                       for i in range(6)]
            idle = [model_rollout(envs, turns, ScriptedChatModel(script=["No."] * 10, latency=0.001), "sys",
                                  sessions=sessions) for _ in range(2)]
            waves.append(await asyncio.gather(*solvers, *idle))
        opened = pool.opened
        await pool.aclose()
        return waves, opened

    waves, opened = asyncio.run(run_all())
    assert opened == 8  # one session per concurrent rollout, none built for the second wave
    for runs in waves:
        episodes = [r.episodes["library"] for r in runs]
        assert len({id(ep) for ep in episodes}) == len(episodes)
        for r in runs[:6]:
            ep = r.episodes["library"]
            assert [c.tool for c in ep.calls] == [c.tool for c in chain.calls]  # its own calls, each once
            assert score_episodes(gold, r.episodes).score == 1.0
            assert ep.state_hash() == chain.final_hashes["library"]
        for r in runs[6:]:
            assert not r.episodes["library"].calls and r.episodes["library"].diff().is_empty
        for r in runs:
            r.close()


def test_cached_validator_still_rejects_results_that_break_the_output_schema(tmp_path):
    pkg = tmp_path / "lib_bad_schema"
    shutil.copytree(Environment.load("library").package_dir, pkg)
    manifest = json.loads((pkg / "env.json").read_text())
    tool = next(t for t in manifest["tools"] if t["name"] == "get_book")
    tool["output_schema"]["required"] = sorted(set(tool["output_schema"].get("required", [])) | {"shelf_mark"})
    (pkg / "env.json").write_text(json.dumps(manifest))
    bad = Environment.load(pkg, trust=True)
    calls = []
    original = ValidatingClientSession._validate_tool_result

    async def spy(self, name, result):
        calls.append(name)
        return await original(self, name, result)

    async def run():
        async with in_memory_session(Environment.load("library")) as good_session:
            await good_session.list_tools()
            assert not (await good_session.call_tool("get_book", {"book_id": 3})).isError
        async with in_memory_session(bad) as session:
            assert isinstance(session, ValidatingClientSession)
            await session.list_tools()
            with pytest.raises(RuntimeError, match="Invalid structured content returned by tool get_book"):
                await session.call_tool("get_book", {"book_id": 3})

    ValidatingClientSession._validate_tool_result = spy
    try:
        asyncio.run(run())
    finally:
        ValidatingClientSession._validate_tool_result = original
    assert calls == ["get_book", "get_book"]  # the SDK's call_tool still goes through our override


def test_one_node_chain_step_gives_the_same_record_as_the_per_step_graph(chain):
    def timeless(records):  # created_at is the wall clock (seconds), everything else must match
        return [{k: v for k, v in r.items() if k != "created_at"} for r in records]

    ctx = QueryGenContext(rollouts=2, store_path=None)  # no store: each of the three runs makes its record
    via_graph = make_chain_graph().invoke({"chain": chain.model_dump()}, context=ctx)["records"]
    via_node = querygen.run_records(process_chain({"chain": chain.model_dump()}, querygen.ContextRuntime(ctx)))
    assert timeless(via_graph) == timeless(via_node) and via_node[0]["verification"]["accepted"]
    out = make_graph().invoke({"envs": ["library"], "n": 1, "seed": chain.seed}, context=ctx)
    assert timeless(querygen.run_records(out)) == timeless(via_node)


def test_step_graph_runs_each_chain_as_a_subgraph_with_the_same_records():
    def timeless(records):  # slots finish in any order
        return sorted(({k: v for k, v in r.items() if k != "created_at"} for r in records), key=lambda r: r["key"])

    graph = make_graph()
    drawn = list(graph.get_graph(xray=True).nodes)  # what Studio draws: the five steps inside process_chain
    assert [n for n in drawn if n.startswith("process_chain:")] == [
        f"process_chain:{s}" for s in ("split_turns", "generate_queries", "calibrate", "roll_out", "verify")]
    inputs = {"envs": ["library"], "n": 2}
    inline = graph.invoke(inputs, context=QueryGenContext(rollouts=1, store_path=None))  # no store: no resume
    stepped, namespaces = None, set()
    for ns, chunk in graph.stream(inputs, context=QueryGenContext(rollouts=1, step_graph=True, store_path=None),
                                  stream_mode="updates", subgraphs=True):
        namespaces.update(f"{n.split(':')[0]}/{node}" for n in ns for node in chunk)
        if not ns and "summarize" in chunk:
            stepped = chunk["summarize"]["summary"]
    # with step_graph, every step streams as a node of the chain's subgraph; inline, none does
    assert {"process_chain/split_turns", "process_chain/roll_out", "process_chain/verify"} <= namespaces
    assert stepped == inline["summary"]
    again = graph.invoke(inputs, context=QueryGenContext(rollouts=1, step_graph=True, store_path=None))
    assert timeless(querygen.run_records(again)) == timeless(querygen.run_records(inline)) and len(inline["record_keys"]) == 2


def test_model_rollouts_do_no_blocking_io_on_the_event_loop():
    """`langgraph dev` rejects blocking calls made on an event loop (blockbuster); model rollouts run
    on one, so their SQLite work (new episodes, tool calls) must happen in worker threads."""
    blockbuster = pytest.importorskip("blockbuster")
    from envfactory.bench.querygen import GoldReplayModel, gold_scripts
    scripts = gold_scripts("library", 3, 0, QueryGenContext(rollouts=1))
    graph = make_graph()
    bb = blockbuster.BlockBuster()
    bb.activate()
    try:
        out = graph.invoke({"envs": ["library"], "n": 3, "seed": 0},
                           context=QueryGenContext(rollouts=1, chat_models={"rollout": GoldReplayModel(latency=0.0, scripts=scripts)}),
                           config={"max_concurrency": 2})
    finally:
        bb.deactivate()
    reasons = [r["verification"]["reason"] for r in querygen.run_records(out)]
    assert out["summary"]["accepted"] == 3, reasons


def test_zero_cpu_ceiling_counts_the_tail_of_a_run():
    from envfactory.bench.querygen import zero_cpu_makespan
    assert zero_cpu_makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0      # the long task holds one slot to the end
    assert zero_cpu_makespan([1.0, 1.0, 1.0, 3.0], 2) == 4.0      # taken last, it runs alone at the end
    assert zero_cpu_makespan([1.0] * 6, 3) == 2.0 and zero_cpu_makespan([], 4) == 0.0
