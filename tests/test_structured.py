"""Structured outputs with bounded retries: the error goes back to the model; then a clear failure."""
from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, ToolMessage

from envfactory.agents.query_agent import GeneratedQueries
from envfactory.agents.structured import StructuredOutputError, extract_json, invoke_structured
from tests.doubles import ScriptedChatModel, malformed, tool_call_message


def test_valid_first_time_via_tool_call():
    model = ScriptedChatModel(script=[tool_call_message("GeneratedQueries", {"queries": ["a", "b"]})])
    out = invoke_structured(model, [HumanMessage("go")], GeneratedQueries)
    assert out.value.queries == ["a", "b"] and out.attempts == 1
    assert model.bound_tools == [GeneratedQueries]


def test_invalid_then_fixed_sends_the_error_back():
    model = ScriptedChatModel(script=[malformed("json"), malformed("shape"), '{"queries": ["fixed"]}'])
    out = invoke_structured(model, [HumanMessage("go")], GeneratedQueries, use_tool_calling=False)
    assert out.value.queries == ["fixed"] and out.attempts == 3
    second_request = model.requests[1]
    assert "did not match the required GeneratedQueries format" in second_request[-1].content
    third_request = model.requests[2]
    assert "queries: Field required" in third_request[-1].content


def test_tool_call_errors_are_answered_with_tool_messages():
    model = ScriptedChatModel(script=[tool_call_message("GeneratedQueries", {"queries": "not a list"}),
                                      tool_call_message("GeneratedQueries", {"queries": ["ok"]})])
    out = invoke_structured(model, [HumanMessage("go")], GeneratedQueries)
    assert out.value.queries == ["ok"]
    assert isinstance(model.requests[1][-1], ToolMessage) and "valid list" in model.requests[1][-1].content


def test_gives_up_with_every_attempt_recorded():
    model = ScriptedChatModel(script=[malformed("json"), malformed("unknown_tool"), "no json here"])
    with pytest.raises(StructuredOutputError) as err:
        invoke_structured(model, [HumanMessage("go")], GeneratedQueries, max_retries=2)
    assert len(err.value.attempts) == 3 and "after 3 attempt(s)" in str(err.value)
    assert "expected a call of GeneratedQueries, got a call of delete_everything" in err.value.attempts[1]["error"]
    assert model.remaining == 0


def test_extract_json_from_fences_and_prose():
    assert extract_json('Sure!\n```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('The answer is {"a": [1, 2]} as asked.') == {"a": [1, 2]}
    with pytest.raises(ValueError):
        extract_json("nothing")


def test_the_async_form_retries_the_same_way():
    import asyncio

    from envfactory.agents.structured import ainvoke_structured
    model = ScriptedChatModel(script=[malformed("json"), '{"queries": ["fixed"]}'])
    out = asyncio.run(ainvoke_structured(model, [HumanMessage("go")], GeneratedQueries, use_tool_calling=False))
    assert out.value.queries == ["fixed"] and out.attempts == 2
    assert "did not match the required GeneratedQueries format" in model.requests[1][-1].content
    broken = ScriptedChatModel(script=[malformed("json"), malformed("shape")])
    with pytest.raises(StructuredOutputError, match="after 2 attempt"):
        asyncio.run(ainvoke_structured(broken, [HumanMessage("go")], GeneratedQueries, max_retries=1))
