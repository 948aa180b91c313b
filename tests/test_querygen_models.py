"""QueryGen with models (scripted, and the real langchain-openai client over HTTP): leakage is
rejected, do-nothing rollouts are rejected, correct rollouts accepted, the user simulator ends
conversations, malformed output is retried then rejected."""
from __future__ import annotations

import json

import pytest
from langchain_openai import ChatOpenAI

from envfactory.envs.chains.sampling import GoldTrajectory
from envfactory.graphs.querygen import QueryGenContext, make_graph, run_records
from envfactory.graphs.querygen.resources import _sampler
from tests.doubles import OpenAIStubServer, ScriptedChatModel, malformed, tool_call_message
from tests.doubles.openai_stub import text_reply, tool_reply

SEED = 9


@pytest.fixture(scope="module")
def chain() -> GoldTrajectory:
    sampler = _sampler(("library",), 1)
    for seed in range(SEED, SEED + 50):
        t = sampler.sample(seed)
        if isinstance(t, GoldTrajectory) and any(not c.read_only for c in t.calls):
            return t
    raise AssertionError("no chain")


def _turns(chain):
    from envfactory.agents.query_agent import split_turns
    return split_turns(chain, chain.seed)


def _solver_script(chain, turns):
    """A model that makes exactly the gold calls, turn by turn."""
    script = []
    for idx in turns:
        script += [tool_call_message(chain.calls[i].tool, chain.calls[i].arguments) for i in idx]
        script.append("All done.")
    return script


def _stating(chain, turns, tag: str) -> list[str]:
    """Model-written queries that still state every value and selector (the determinacy check
    rejects any that do not): the template's words plus a tag."""
    from envfactory.agents.query_agent import template_queries
    return [f"{q} ({tag} {chr(65 + i)})" for i, q in enumerate(template_queries(chain, turns))]


def _run(chain, ctx, n=1):
    ctx.store_path = None  # every run makes its record (the workspace store would resume the task)
    return run_records(make_graph().invoke({"envs": ["library"], "n": n, "seed": chain.seed}, context=ctx))[0]


def test_correct_model_rollout_is_accepted(chain):
    turns = _turns(chain)
    queries = _stating(chain, turns, "request")
    query = ScriptedChatModel(script=[tool_call_message("GeneratedQueries", {"queries": queries})])
    rollout = ScriptedChatModel(script=_solver_script(chain, turns))
    rec = _run(chain, QueryGenContext(rollouts=1, chat_models={"query": query, "rollout": rollout}))
    assert rec["verification"]["accepted"], rec["verification"]
    assert rec["provenance"]["tiers"]["query"] == "model" and rec["provenance"]["tiers"]["rollout"] == "model"
    assert rec["provenance"]["models"] == {"query": "scripted", "rollout": "scripted"}
    assert {p["id"] for p in rec["provenance"]["prompts"]} == {"query_agent/generate", "rollout_agent/system"}
    assert [m["content"] for m in rec["messages"] if m["role"] == "user"] == queries
    assert rollout.bound_tools and {t.name for t in rollout.bound_tools} >= {"checkout_book", "get_book"}
    # the rollout's model tokens are kept with the record (the report shows cost per accepted task)
    words_in = sum(len(str(m.content).split()) for request in rollout.requests for m in request)
    assert rec["verification"]["tokens"] >= words_in + len(rollout.requests) > 0  # input words + >= 1 out per reply


def test_rollout_that_does_nothing_is_rejected(chain):
    lazy = ScriptedChatModel(script=["I cannot help with that."] * 20)
    rec = _run(chain, QueryGenContext(rollouts=2, chat_models={"rollout": lazy}))
    v = rec["verification"]
    assert not v["accepted"] and v["reason"].startswith("no rollout reached the gold state")
    assert v["pass_rate"] == 0.0 and v["difficulty"] == "unsolved"


def test_refinement_that_leaks_a_tool_name_is_rejected(chain):
    turns = _turns(chain)
    leaky = ScriptedChatModel(script=[f'{{"queries": {json.dumps([f"please call {chain.calls[0].tool} now"] * len(turns))}}}'])
    rec = _run(chain, QueryGenContext(rollouts=1, chat_models={"refine": leaky}))
    v = rec["verification"]
    assert not v["accepted"] and v["reason"].startswith("leakage:") and f"tool name {chain.calls[0].tool}" in v["reason"]
    assert rec["provenance"]["tiers"]["refine"] == "model"


def test_malformed_output_is_retried_then_rejected(chain):
    broken = ScriptedChatModel(script=[malformed("json"), malformed("shape"), malformed("unknown_tool")])
    rec = _run(chain, QueryGenContext(rollouts=1, chat_models={"query": broken}))
    v = rec["verification"]
    assert not v["accepted"] and v["reason"].startswith("query generation failed") and "after 3 attempt(s)" in v["reason"]
    assert broken.remaining == 0


def test_unknown_tool_calls_count_as_format_errors(chain):
    turns = _turns(chain)
    script = [tool_call_message("teleport_book", {"book_id": 1})] + _solver_script(chain, turns)
    rec = _run(chain, QueryGenContext(rollouts=1, chat_models={"rollout": ScriptedChatModel(script=script)}))
    r = rec["verification"]["reward"]
    assert r["format_penalty"] == pytest.approx(0.05) and r["state"] == 1.0 and r["score"] < 1.0
    assert any("unknown tool 'teleport_book'" in m["content"] for m in rec["messages"] if m["role"] == "tool")


def test_user_simulator_ends_the_conversation(chain):
    turns = _turns(chain)
    solver = ScriptedChatModel(script=_solver_script(chain, turns))
    user = ScriptedChatModel(script=[f"Next: request {chr(65 + i)}" for i in range(1, len(turns))] + ["Thanks! ###STOP###"])
    rec = _run(chain, QueryGenContext(mode="conv", rollouts=1, chat_models={"rollout": solver, "user_simulator": user}))
    assert rec["verification"]["accepted"] and rec["provenance"]["tiers"]["user_simulator"] == "model"
    users = [m["content"] for m in rec["messages"] if m["role"] == "user"]
    assert users[1:] == [f"Next: request {chr(65 + i)}" for i in range(1, len(turns))]
    assert user.remaining == 0 and solver.remaining == 0  # the simulator's STOP ended it
    # the simulator saw the conversation with roles swapped: the agent's words as human messages
    assert type(user.requests[0][0]).__name__ == "SystemMessage"
    assert type(user.requests[0][1]).__name__ == "AIMessage"


def test_through_the_real_openai_client_over_http(chain):
    turns = _turns(chain)
    script = [tool_reply("GeneratedQueries", {"queries": _stating(chain, turns, "please help")})]
    for idx in turns:
        script += [tool_reply(chain.calls[i].tool, chain.calls[i].arguments) for i in idx] + [text_reply("Done.")]
    with OpenAIStubServer(script) as stub:
        client = ChatOpenAI(base_url=stub.url, api_key="test", model="stub-model", max_retries=0)
        rec = _run(chain, QueryGenContext(rollouts=1, chat_models={"query": client, "rollout": client}))
        assert rec["verification"]["accepted"], rec["verification"]
        assert rec["provenance"]["models"]["rollout"] == "stub-model"
        sent = stub.requests[1]
        assert sent["messages"][0]["role"] == "system" and {t["function"]["name"] for t in sent["tools"]} >= {"checkout_book"}


def test_judge_adds_a_signal_but_never_decides(chain):
    turns = _turns(chain)
    judge = ScriptedChatModel(script=[tool_call_message("Verdict", {"score": 2, "issues": ["terse closing"]})])
    rec = _run(chain, QueryGenContext(rollouts=1, chat_models={"rollout": ScriptedChatModel(script=_solver_script(chain, turns)),
                                                                "judge": judge}))
    v = rec["verification"]
    assert v["accepted"] and v["judge"]["score"] == 2 and v["judge"]["issues"] == ["terse closing"]
    lazy = ScriptedChatModel(script=["No."] * 10)
    unused_judge = ScriptedChatModel(script=[])
    rec = _run(chain, QueryGenContext(rollouts=1, chat_models={"rollout": lazy, "judge": unused_judge}))
    assert not rec["verification"]["accepted"] and rec["verification"]["judge"] is None  # a failed state check stays failed
