"""Direct tools (``envs/mcp/direct.py``) and the untraced rollout path (``agents/untraced.py``) are
what the MCP path is: the same tool definitions for the model, the same texts and error statuses
for every kind of call, the same output-schema errors, the same states; and the same rollouts,
messages, hashes and rewards, traced or not, through direct tools, pooled in-memory MCP sessions,
a fresh MCP server per rollout, and (per call) streamable HTTP."""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.utils.function_calling import convert_to_openai_tool

from envfactory.agents.rollout_agent import _text, model_rollout
from envfactory.agents.untraced import ainvoke_model, ainvoke_tool, is_traced
from envfactory.data.records import GoldCallRef, UserTurn
from envfactory.data.reward import Call, replay_gold, score_episodes
from envfactory.envs import Environment
from envfactory.envs.mcp import (DirectToolPool, EpisodeControl, EpisodeSessionPool, build_server, episode_tools,
                                 http_session)
from envfactory.envs.runtime.packages import catalog_names
from tests.doubles import ScriptedChatModel, tool_call_message
from tests.test_mcp_transports import http_server  # noqa: F401  (the module's HTTP server fixture)

# every kind of call: reads, writes, domain errors, schema errors, extra and missing arguments,
# wrong types, values no schema bounds, a write refused after another
CALLS = [
    ("get_book", {"book_id": 7}),
    ("get_book", {"book_id": 99999}),
    ("get_book", {"book_id": "seven"}),
    ("get_book", {}),
    ("get_book", {"book_id": 7, "extra": 1}),
    ("get_book", {"book_id": 2 ** 70}),
    ("search_books", {"query": "river"}),
    ("checkout_book", {"member_id": 21, "book_id": 7}),
    ("checkout_book", {"member_id": 21, "book_id": 7}),
    ("renew_loan", {"loan_id": 3}),
    ("place_hold", {"member_id": 21, "book_id": 5}),
    ("place_hold", {"member_id": 21, "book_id": 5}),
    ("search_books", {"query": "x" * 20_000}),
]


def message_of(msg) -> tuple[str, str]:
    return _text(msg.content), getattr(msg, "status", "success")


async def run_calls(tools: list) -> list[tuple[str, str]]:
    by_name = {t.name: t for t in tools}
    return [message_of(await by_name[name].ainvoke({"type": "tool_call", "id": f"c{i}", "name": name, "args": args}))
            for i, (name, args) in enumerate(CALLS)]


def test_direct_tools_are_the_mcp_tools_for_the_model():
    """bind_tools sends the same list: names, descriptions, argument schemas, annotations."""
    async def go(env):
        async with episode_tools(env) as (mcp_tools, _):
            async with DirectToolPool(env).tools_for(env.episode()) as direct:
                return mcp_tools, direct
    for name in catalog_names():
        env = Environment.load(name)
        mcp_tools, direct = asyncio.run(go(env))
        assert [convert_to_openai_tool(t) for t in direct] == [convert_to_openai_tool(t) for t in mcp_tools], name
        assert [t.metadata for t in direct] == [t.metadata for t in mcp_tools], name


def test_every_kind_of_call_gives_the_same_text_status_and_state(library_env, http_server):  # noqa: F811
    async def direct_path():
        ep = library_env.episode()
        async with DirectToolPool(library_env).tools_for(ep) as tools:
            out = await run_calls(tools)
        async with DirectToolPool(library_env).tools_for(library_env.episode()) as tools:
            by_name = {t.name: t for t in tools}
            untraced = [message_of(await ainvoke_tool(by_name[n], {"id": "u", "name": n, "args": a}, traced=False))
                        for n, a in CALLS]
        ep2 = library_env.episode()
        async with DirectToolPool(library_env, inline_calls=False).tools_for(ep2) as tools:
            threaded = await run_calls(tools)
        return out, untraced, threaded, ep.state_hash(), ep2.state_hash()

    async def in_memory_path():
        ep = library_env.episode()
        async with episode_tools(build_server(library_env, episode=ep)) as (tools, _):
            return await run_calls(tools), ep.state_hash()

    async def http_path():
        async with http_session(http_server) as session:
            async with episode_tools(session, control_token="tok") as (tools, control):
                return await run_calls(tools), await control.state_hash()

    direct, untraced, threaded, direct_hash, threaded_hash = asyncio.run(direct_path())
    memory, memory_hash = asyncio.run(in_memory_path())
    http, http_hash = asyncio.run(http_path())
    assert direct == memory == http == threaded
    assert untraced == direct
    assert direct_hash == memory_hash == http_hash == threaded_hash != library_env.initial_hash
    statuses = [s for _, s in direct]
    assert statuses.count("error") >= 7 and statuses.count("success") >= 4  # the script does reach both


def test_a_result_that_breaks_its_output_schema_fails_alike(tmp_path):
    pkg = tmp_path / "upserts_bad_output"
    shutil.copytree(Path(__file__).parent / "fixtures" / "upserts", pkg)
    manifest = json.loads((pkg / "env.json").read_text())
    manifest["tools"][0]["output_schema"]["properties"]["changed"] = {"type": "string"}  # the tool returns an int
    (pkg / "env.json").write_text(json.dumps(manifest))
    env = Environment.load(pkg, trust=True)
    call = {"type": "tool_call", "id": "c1", "name": "write", "args": {"statement": "people_delete", "x": 1, "y": 0, "s": "a"}}

    async def go(direct: bool):
        ep = env.episode()
        pool = DirectToolPool(env) if direct else EpisodeSessionPool(env)
        async with pool.tools_for(ep) as tools:
            with pytest.raises(RuntimeError) as raised:
                await tools[0].ainvoke(call)
        if not direct:
            await pool.aclose()
        return str(raised.value)

    assert asyncio.run(go(True)) == asyncio.run(go(False))
    assert "Invalid structured content returned by tool write" in asyncio.run(go(True))


# ---------------------------------------------------------------- whole rollouts

def script(bad_arguments: bool = True) -> list:
    """Gold-like calls with every kind of failure a model makes (an unknown tool, bad arguments, a
    domain error, a malformed call), across two user turns."""
    from tests.doubles.scripted import malformed
    from langchain_core.messages import AIMessage
    items = [tool_call_message("search_books", {"query": "river"}, call_id="s1"),
             tool_call_message("checkout_book", {"member_id": 21, "book_id": 7}, call_id="s2"),
             tool_call_message("delete_everything", {}, call_id="s3"),
             AIMessage(content="", invalid_tool_calls=[{"name": "get_book", "args": "{oops", "id": "bad1",
                                                        "error": "not JSON", "type": "invalid_tool_call"}]),
             "Checked out.",
             tool_call_message("place_hold", {"member_id": 21, "book_id": 5}, call_id="s4"),
             tool_call_message("renew_loan", {"loan_id": 3}, call_id="s5"),
             "Done."]
    if bad_arguments:
        items.insert(1, tool_call_message("get_book", {"book_id": "seven"}, call_id="s6"))
    assert malformed  # the helper exists; the script builds its own invalid call above
    return items


TURNS = [UserTurn(query="Check out book 7 for member 21.", gold_calls=[
             GoldCallRef(env="library", name="checkout_book", arguments={"member_id": 21, "book_id": 7})]),
         UserTurn(query="Put member 21 on hold for book 5.", gold_calls=[
             GoldCallRef(env="library", name="place_hold", arguments={"member_id": 21, "book_id": 5})])]


class Recorder(AsyncCallbackHandler):
    def __init__(self):
        self.events: list[str] = []

    async def on_chat_model_start(self, *args, **kwargs):
        self.events.append("model")

    async def on_tool_start(self, *args, **kwargs):
        self.events.append("tool")


def rollout(library_env, how: str, config: dict | None = None):
    envs = {"library": library_env}

    async def go():
        pools = {"direct": lambda: {"library": DirectToolPool(library_env)},
                 "direct_threads": lambda: {"library": DirectToolPool(library_env, inline_calls=False)},
                 "mcp_pool": lambda: {"library": EpisodeSessionPool(library_env)},
                 "mcp_fresh": lambda: None}[how]()
        run = await model_rollout(envs, TURNS, ScriptedChatModel(script=script()), "You help.", sessions=pools,
                                  config=config)
        if pools:
            for pool in pools.values():
                await pool.aclose()
        return run

    run = asyncio.run(go())
    gold = replay_gold(envs, [Call(name=c.name, arguments=c.arguments, env=c.env) for t in TURNS for c in t.gold_calls])
    reward = score_episodes(gold, run.episodes, n_malformed=run.malformed_calls)
    out = ([m.model_dump() for m in run.messages], run.steps, run.malformed_calls, run.stopped,
           {n: ep.state_hash() for n, ep in run.episodes.items()}, reward.model_dump())
    run.close()
    return out


def test_rollouts_are_the_same_on_every_path_traced_or_not(library_env):
    direct = rollout(library_env, "direct")
    assert rollout(library_env, "direct_threads") == direct
    assert rollout(library_env, "mcp_pool") == direct
    assert rollout(library_env, "mcp_fresh") == direct
    recorder = Recorder()
    assert rollout(library_env, "direct", config={"callbacks": [recorder]}) == direct
    assert recorder.events.count("model") == direct[1] and recorder.events.count("tool") == 5  # traced: every run seen (5 calls reach a tool)
    messages = direct[0]
    texts = [m["content"] for m in messages if m["role"] == "tool"]
    assert any(t.startswith("Error: unknown tool 'delete_everything'") for t in texts)
    assert any("invalid arguments for get_book" in t and t.startswith("Error: ") for t in texts)
    assert direct[2] == 2  # the unknown tool and the unparsable call


def test_untraced_model_turns_answer_as_traced_ones():
    model = ScriptedChatModel(script=[tool_call_message("get_book", {"book_id": 1}, call_id="k1"), "Fine."] * 2)
    bound = model.bind_tools([])
    assert not is_traced(model, None) and is_traced(model, {"callbacks": [Recorder()]})

    async def go():
        from langchain_core.messages import HumanMessage
        history = [HumanMessage("hi")]
        traced = [await bound.ainvoke(history, config={"callbacks": [Recorder()]}) for _ in range(2)]
        untraced = [await ainvoke_model(bound, history) for _ in range(2)]
        return traced, untraced

    traced, untraced = asyncio.run(go())
    strip = lambda m: (m.content, m.tool_calls, m.usage_metadata, m.response_metadata)  # noqa: E731 (ids are run ids)
    assert [strip(m) for m in traced] == [strip(m) for m in untraced]
