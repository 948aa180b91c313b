"""MCP serving in memory: tool listing, results, precise errors, per-session isolation,
explicit episodes, hidden control operations, and LangChain tools through a held session."""
from __future__ import annotations

import asyncio

import pytest

from envfactory.envs import Environment
from envfactory.envs.mcp import EpisodeControl, build_server, episode_tools, in_memory_session


@pytest.fixture(scope="module")
def env():
    return Environment.load("library")


def run(coro):
    return asyncio.run(coro)


def test_tools_list_matches_manifest_and_hides_control(env):
    async def go():
        async with in_memory_session(env) as s:
            return (await s.list_tools()).tools
    tools = run(go())
    assert [t.name for t in tools] == [t.name for t in env.tool_specs]
    assert not any(t.name.startswith("_ef_") for t in tools)
    for t in tools:
        assert all(p.get("description") for p in t.inputSchema["properties"].values())
        spec = env.manifest.tool(t.name)
        assert t.annotations.readOnlyHint is spec.read_only and t.annotations.destructiveHint is (not spec.read_only)
        assert t.outputSchema == spec.output_schema


def test_structured_result_equals_direct_call(env):
    async def go():
        async with in_memory_session(env) as s:
            return await s.call_tool("search_books", {"genre": "poetry", "limit": 3})
    res = run(go())
    direct = env.episode().call("search_books", {"genre": "poetry", "limit": 3})
    assert not res.isError and res.structuredContent == direct.output
    assert res.content[0].text == direct.text


@pytest.mark.parametrize("tool,args,fragment", [
    ("lend_everything", {}, "unknown tool 'lend_everything'; available tools:"),
    ("checkout_book", {"member_id": "x", "book_id": 1}, "argument 'member_id' must be integer"),
    ("checkout_book", {"member_id": 3, "book_id": 5}, "book 5 has no copy available"),
])
def test_errors_are_mcp_errors_with_precise_messages(env, tool, args, fragment):
    async def go():
        async with in_memory_session(env) as s:
            res = await s.call_tool(tool, args)
            return res, await EpisodeControl(s).state_hash()
    res, state = run(go())
    assert res.isError and fragment in res.content[0].text
    assert state == env.initial_hash  # a failed call changes nothing


def test_sessions_are_isolated_and_named_episodes_shared(env):
    server = build_server(env)

    async def go():
        async with in_memory_session(server) as a, in_memory_session(server) as b:
            await a.call_tool("checkout_book", {"member_id": 3, "book_id": 1})
            seen_a = (await a.call_tool("get_book", {"book_id": 1})).structuredContent["available_copies"]
            seen_b = (await b.call_tool("get_book", {"book_id": 1})).structuredContent["available_copies"]
            # an explicit episode id: two sessions, one episode
            await a.call_tool("checkout_book", {"member_id": 4, "book_id": 3}, meta={"episode_id": "shared"})
            shared_b = await b.call_tool("get_book", {"book_id": 3}, meta={"episode_id": "shared"})
            private_b = await b.call_tool("get_book", {"book_id": 3})
            return seen_a, seen_b, shared_b.structuredContent, private_b.structuredContent
    seen_a, seen_b, shared, private = run(go())
    assert (seen_a, seen_b) == (0, 1)
    assert shared["available_copies"] == private["available_copies"] - 1


def test_control_reset_snapshot_restore_diff(env):
    async def go():
        async with in_memory_session(env) as s:
            ctl = EpisodeControl(s)
            await s.call_tool("checkout_book", {"member_id": 3, "book_id": 1})
            snap = await ctl.snapshot()
            after_one = await ctl.state_hash()
            await s.call_tool("cancel_hold", {"hold_id": 1})
            summary = await ctl.diff_summary()
            restored = await ctl.restore(snap)
            reset = await ctl.reset()
            return after_one, summary, restored, reset
    after_one, summary, restored, reset = run(go())
    assert summary == {"books": {"insert": 0, "update": 1, "delete": 0}, "loans": {"insert": 1, "update": 0, "delete": 0},
                       "holds": {"insert": 0, "update": 1, "delete": 0}}
    assert restored == after_one and reset == env.initial_hash


def test_control_token_is_enforced(env):
    server = build_server(env, control_token="s3cret")

    async def go():
        async with in_memory_session(server) as s:
            denied = await s.call_tool("_ef_reset", {})
            allowed = await EpisodeControl(s, token="s3cret").reset()
            return denied, allowed
    denied, allowed = run(go())
    assert denied.isError and "control token" in denied.content[0].text
    assert allowed == env.initial_hash


def test_langchain_tools_hold_one_episode_and_surface_errors(env):
    async def go():
        async with episode_tools(env) as (tools, ctl):
            by_name = {t.name: t for t in tools}
            await by_name["checkout_book"].ainvoke({"member_id": 3, "book_id": 1})
            loans = await by_name["list_member_loans"].ainvoke({"member_id": 3, "status": "active"})
            error = await by_name["checkout_book"].ainvoke(
                {"type": "tool_call", "id": "c1", "name": "checkout_book", "args": {"member_id": 3, "book_id": 5}})
            return loans, error, await ctl.diff_summary()
    loans, error, summary = run(go())
    assert '"book_id": 1' in loans[0]["text"]  # the loan made by the earlier call is visible: same episode
    assert error.status == "error" and "no copy available" in str(error.content)
    assert summary["loans"]["insert"] == 1


def test_session_end_closes_its_episode(env):
    server = build_server(env)

    async def go():
        async with in_memory_session(server) as s:
            await s.call_tool("get_book", {"book_id": 1})
            assert server.envfactory_registry.live == 1
    run(go())
    import gc
    gc.collect()
    assert server.envfactory_registry.live == 0


def test_concurrent_calls_of_one_session_share_one_episode(env):
    """Tool calls run in worker threads: a session's first calls may arrive together."""
    import threading

    from envfactory.envs.mcp.server import EpisodeRegistry

    class Session:  # stands in for an MCP server session (weak-referenceable)
        pass

    registry, session, got = EpisodeRegistry(env), Session(), []
    barrier = threading.Barrier(16)

    def first_call():
        barrier.wait()
        got.append(registry.for_request(session, None))

    threads = [threading.Thread(target=first_call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(e) for e in got}) == 1 and registry.live == 1
