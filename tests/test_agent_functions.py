"""Each agent is a plain function that calls its model (for notebooks), with the package's own
scripted chat model; the graphs send the same prompts."""
from __future__ import annotations

import pytest

from envfactory.agents import judge, query_agent, refine_agent, user_simulator
from envfactory.agents.testing import ScriptedChatModel, tool_call_message
from envfactory.data.records import Message
from envfactory.graphs.querygen import QueryGenContext, slot_chains


@pytest.fixture(scope="module")
def chain():
    return slot_chains(["library"], 1, seed=3, ctx=QueryGenContext(store_path=None))[0]


def test_query_agent_writes_one_message_per_turn(chain):
    turns = query_agent.split_turns(chain, chain.seed)
    model = ScriptedChatModel(script=[tool_call_message("GeneratedQueries", {"queries": [f"message {i}" for i in range(len(turns))]})])
    assert query_agent.generate(chain, turns, model) == [f"message {i}" for i in range(len(turns))]
    from envfactory.envs.runtime.cache import load_env
    descriptions = {t.name: t.description for t in load_env("library").tool_specs}
    expected = query_agent.generate_prompt(chain, turns, descriptions).messages()   # what QueryGen sends too
    assert [m.content for m in model.requests[0][:len(expected)]] == [m.content for m in expected]


def test_refine_agent_rewrites_and_checks_for_leaks(chain):
    turns = query_agent.split_turns(chain, chain.seed)
    leaky = [f"please call {chain.calls[0].tool}"] * len(turns)
    model = ScriptedChatModel(script=[tool_call_message("RefinedQueries", {"queries": leaky})])
    refined, report = refine_agent.calibrate(chain, ["x"] * len(turns), turns, model)
    assert refined == leaky and not report.ok and chain.calls[0].tool in report.leaks[0]


def test_judge_and_user_simulator_are_plain_calls():
    model = ScriptedChatModel(script=[tool_call_message("Verdict", {"score": 4, "issues": []})])
    verdict = judge.judge([{"role": "user", "content": "renew my loan"}, {"role": "assistant", "content": "done",
                           "tool_calls": [{"name": "renew_loan", "arguments": {"loan_id": 1}}]}], model)
    assert verdict.score == 4 and "renew_loan" in model.requests[0][-1].content
    from envfactory.data.records import UserTurn
    user = ScriptedChatModel(script=["I want to renew loan 1, thanks ###STOP###"])
    reply = user_simulator.respond(user, [UserTurn(query="renew my loan", gold_calls=[], details={"loan_id": 1})],
                                   [Message(role="user", content="renew my loan"), Message(role="assistant", content="Which loan?")], 1)
    assert reply == "###STOP###"
