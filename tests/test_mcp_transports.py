"""stdio and streamable-HTTP serving: each connection or session gets its own episode."""
from __future__ import annotations

import asyncio
import sys

import pytest

from envfactory.envs import Environment
from envfactory.envs.mcp import EpisodeControl, episode_tools, http_app, http_session, stdio_session
from tests.servers import free_port, serving

SERVE = [sys.executable, "-m", "envfactory.cli.main", "envs", "serve", "library", "--transport", "stdio"]


def test_stdio_processes_are_isolated():
    env = Environment.load("library")

    async def go():
        async with stdio_session(SERVE[0], SERVE[1:]) as a, stdio_session(SERVE[0], SERVE[1:]) as b:
            tools = (await a.list_tools()).tools
            wrote = await a.call_tool("checkout_book", {"member_id": 3, "book_id": 1})
            bad = await a.call_tool("checkout_book", {"member_id": 3})
            return (len(tools), wrote.isError, bad.content[0].text,
                    await EpisodeControl(a).state_hash(), await EpisodeControl(b).state_hash())
    n_tools, write_error, bad, hash_a, hash_b = asyncio.run(go())
    assert n_tools == 9 and not write_error
    assert "must contain ['book_id']" in bad
    assert hash_a != env.initial_hash and hash_b == env.initial_hash


@pytest.fixture(scope="module")
def http_server():
    port = free_port()
    with serving(http_app(Environment.load("library"), control_token="tok"), port) as base:
        yield f"{base}/mcp/"


def test_http_sessions_on_one_server_are_isolated(http_server):
    env = Environment.load("library")

    async def go():
        async with http_session(http_server) as a, http_session(http_server) as b:
            await a.call_tool("checkout_book", {"member_id": 3, "book_id": 1})
            ca, cb = EpisodeControl(a, token="tok"), EpisodeControl(b, token="tok")
            denied = await b.call_tool("_ef_reset", {})
            return await ca.state_hash(), await cb.state_hash(), denied.isError
    hash_a, hash_b, denied = asyncio.run(go())
    assert hash_a != env.initial_hash and hash_b == env.initial_hash and denied


def test_langchain_tools_over_http(http_server):
    async def go():
        async with http_session(http_server) as s:
            async with episode_tools(s, control_token="tok") as (tools, ctl):
                by_name = {t.name: t for t in tools}
                out = await by_name["renew_loan"].ainvoke(
                    {"type": "tool_call", "id": "1", "name": "renew_loan", "args": {"loan_id": 3}})
                return out, await ctl.state_hash()
    out, state = asyncio.run(go())
    assert out.status == "error" and "wait for this book" in str(out.content)
    assert state == Environment.load("library").initial_hash
