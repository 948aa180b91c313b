"""The test doubles themselves, and the real langchain-openai client over HTTP against the stub."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from envfactory.agents.query_agent import GeneratedQueries
from envfactory.agents.structured import invoke_structured
from envfactory.agents.usage import UsageTracker
from tests.doubles import OpenAIStubServer, ScriptedChatModel, tool_call_message
from tests.doubles.openai_stub import text_reply, tool_reply


def test_scripted_model_replays_records_and_runs_out_clearly():
    m = ScriptedChatModel(script=["first", tool_call_message("get_book", {"book_id": 1}), lambda msgs: f"echo {msgs[-1].content}"])
    assert m.invoke("a").content == "first"
    assert m.invoke("b").tool_calls[0]["args"] == {"book_id": 1}
    assert m.invoke("c").content == "echo c"
    assert [r[-1].content for r in m.requests] == ["a", "b", "c"]
    with pytest.raises(RuntimeError, match="ran out of script after 3 replies"):
        m.invoke("d")


def test_scripted_model_latency_is_concurrent_under_asyncio():
    m = ScriptedChatModel(script=["x"] * 8, latency=0.1)

    async def go():
        await asyncio.gather(*(m.ainvoke("q") for _ in range(8)))
    start = time.perf_counter()
    asyncio.run(go())
    assert time.perf_counter() - start < 0.5  # eight 100 ms calls overlap


@tool
def get_book(book_id: int) -> str:
    """Get a book by id."""
    return str(book_id)


def test_real_openai_client_over_http():
    with OpenAIStubServer([text_reply("hello there"), tool_reply("get_book", {"book_id": 7}),
                           tool_reply("GeneratedQueries", {"queries": ["q1"]})]) as stub:
        client = ChatOpenAI(base_url=stub.url, api_key="test", model="stub-model", max_retries=0)
        tracker = UsageTracker()
        plain = client.invoke([HumanMessage("hi")], config={"callbacks": [tracker.for_role("query")]})
        assert plain.content == "hello there"
        called = client.bind_tools([get_book]).invoke("which book?")
        assert called.tool_calls[0]["name"] == "get_book" and called.tool_calls[0]["args"] == {"book_id": 7}
        assert stub.requests[1]["tools"][0]["function"]["name"] == "get_book"
        structured = invoke_structured(client, [HumanMessage("write")], GeneratedQueries)
        assert structured.value.queries == ["q1"]
        assert tracker.report()["calls"] == 1 and tracker.report()["input_tokens"] > 0


def test_stub_streams_and_reports_exhaustion():
    with OpenAIStubServer([text_reply("streamed words")]) as stub:
        client = ChatOpenAI(base_url=stub.url, api_key="test", model="stub-model", max_retries=0, streaming=True)
        assert "".join(c.content for c in client.stream("hi")) == "streamed words"
        r = httpx.post(f"{stub.url}/chat/completions", json={"model": "m", "messages": []})
        assert r.status_code == 500 and "script is exhausted" in r.text
