"""A flaky model never loses a task: transient endpoint failures (HTTP 503/500/429, dropped
connections, timeouts) are retried with backoff that honours Retry-After; what still fails leaves the
task not done (counted, not stored, retried by the next run), never rejected. QueryGen runs against the
local OpenAI-compatible stub answering 503 and resets for a fraction of calls and ends with the same
accepted set as a clean run."""
from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai import ChatOpenAI

from envfactory.agents.query_agent import GeneratedQueries
from envfactory.agents.structured import StructuredOutputError, ainvoke_structured, invoke_structured
from envfactory.agents.transient import (ModelUnavailableError, RetryPolicy, acall_with_retries, call_with_retries,
                                         is_transient, retry_after)
from envfactory.data.store import RecordStore
from envfactory.graphs.querygen import QueryGenContext, make_graph
from tests.doubles import OpenAIStubServer, ScriptedChatModel, tool_call_message
from tests.doubles.openai_stub import text_reply, tool_reply

FAST = RetryPolicy(retries=3, wait=0.001, wait_max=0.05)
RUN = {"envs": ["library"], "n": 6, "seed": 11}


def _client(stub) -> ChatOpenAI:
    return ChatOpenAI(base_url=stub.url, api_key="test", model="stub-model", max_retries=0)


# ------------------------------------------------------------------ the retry layer

@pytest.mark.parametrize("fault", ["503", "500", "429", "reset"])
def test_a_transient_failure_is_retried_and_then_answered(fault):
    with OpenAIStubServer(responder=lambda body: text_reply("hello"), faults=lambda b, n: fault if n <= 2 else None) as stub:
        with pytest.raises(Exception) as raw:
            _client(stub).invoke("first")  # without our layer the client gives up at once (max_retries=0)
        assert is_transient(raw.value)
        reply = call_with_retries(lambda: _client(stub).invoke("second"), FAST)
        assert reply.content == "hello" and stub.faults_sent == [fault] * 3


def test_errors_that_no_retry_mends_are_not_retried():
    calls = []

    def bad_request():
        calls.append(1)
        raise ValueError("400: the request is malformed")

    with pytest.raises(ValueError):
        call_with_retries(bad_request, FAST)
    assert len(calls) == 1 and not is_transient(ValueError("x"))
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError()) and is_transient(asyncio.TimeoutError())


def test_retries_are_bounded_then_the_model_is_unavailable():
    with OpenAIStubServer(responder=lambda body: text_reply("never"), faults=lambda b, n: "503") as stub:
        with pytest.raises(ModelUnavailableError, match=r"failed 4 time\(s\), last: .*HTTP 503") as err:
            call_with_retries(lambda: _client(stub).invoke("x"), FAST)
        assert len(stub.faults_sent) == 4 and err.value.attempts == 4 and is_transient(err.value)
        assert is_transient(err.value.__cause__)


def test_retry_after_from_the_server_is_honoured():
    with OpenAIStubServer(responder=lambda body: text_reply("ok"), faults=lambda b, n: "503" if n <= 2 else None,
                          retry_after_ms=150) as stub:
        start = time.monotonic()
        call_with_retries(lambda: _client(stub).invoke("x"), RetryPolicy(retries=3, wait=0.0001, wait_max=5))
        assert time.monotonic() - start >= 0.3  # two waits of the server's 150 ms, not our 0.1 ms
        with pytest.raises(Exception) as raw:
            _client(stub).invoke("y")
        assert retry_after(raw.value) == pytest.approx(0.15)
    start = time.monotonic()  # a Retry-After above wait_max is capped: the run never stalls on one call
    with OpenAIStubServer(responder=lambda body: text_reply("ok"), faults=lambda b, n: "429" if n == 1 else None,
                          retry_after_ms=60_000) as stub:
        call_with_retries(lambda: _client(stub).invoke("z"), RetryPolicy(retries=1, wait=0.0001, wait_max=0.05))
    assert time.monotonic() - start < 5


def test_async_calls_are_retried_on_the_loop():
    with OpenAIStubServer(responder=lambda body: text_reply("async"), faults=lambda b, n: "reset" if n == 1 else None) as stub:
        reply = asyncio.run(acall_with_retries(lambda: _client(stub).ainvoke("x"), FAST))
    assert reply.content == "async" and stub.faults_sent == ["reset"]


# ------------------------------------------------------------------ structured outputs

def test_structured_output_survives_a_flaky_endpoint():
    answer = tool_reply("GeneratedQueries", {"queries": ["one", "two"]})
    with OpenAIStubServer(responder=lambda body: answer, faults=lambda b, n: ["503", "reset", None][min(n, 3) - 1]) as stub:
        out = invoke_structured(_client(stub), [HumanMessage("go")], GeneratedQueries, retry=FAST)
    assert out.value.queries == ["one", "two"] and stub.faults_sent == ["503", "reset"]


@pytest.mark.parametrize("fault", ["500", "reset"])
def test_a_model_that_stays_down_is_a_transient_structured_output_error(fault):
    with OpenAIStubServer(responder=lambda body: text_reply("{}"), faults=lambda b, n: fault) as stub:
        with pytest.raises(StructuredOutputError) as err:
            invoke_structured(_client(stub), [HumanMessage("go")], GeneratedQueries, retry=FAST)
        with pytest.raises(StructuredOutputError) as aerr:
            asyncio.run(ainvoke_structured(_client(stub), [HumanMessage("go")], GeneratedQueries, retry=FAST))
    for e in (err.value, aerr.value):
        assert e.transient and isinstance(e.__cause__, ModelUnavailableError)
        assert "no GeneratedQueries from the model: the model call failed" in str(e)


def test_a_timeout_is_a_transient_structured_output_error():
    import threading
    release = threading.Event()

    def slow(body):
        release.wait(5)
        return text_reply("late")

    with OpenAIStubServer(responder=slow) as stub:
        client = ChatOpenAI(base_url=stub.url, api_key="test", model="stub-model", max_retries=0, timeout=0.2)
        with pytest.raises(StructuredOutputError) as err:
            invoke_structured(client, [HumanMessage("go")], GeneratedQueries, retry=RetryPolicy(retries=1, wait=0.001))
        release.set()
    assert err.value.transient and "time" in str(err.value).lower()


def test_a_failure_no_retry_mends_is_a_final_structured_output_error():
    class Refusing(ScriptedChatModel):
        def _generate(self, *args, **kwargs):
            raise ValueError("HTTP 400: context length exceeded")

    with pytest.raises(StructuredOutputError) as err:
        invoke_structured(Refusing(script=[]), [HumanMessage("go")], GeneratedQueries, retry=FAST)
    assert not err.value.transient and isinstance(err.value.__cause__, ValueError)
    assert "context length exceeded" in str(err.value)


def test_deeply_nested_json_is_an_error_the_model_is_told_about():
    deep = "[" * 100_000 + "]" * 100_000
    model = ScriptedChatModel(script=[AIMessage(f'{{"queries": {deep}}}'),
                                      tool_call_message("GeneratedQueries", {"queries": ["fine"]})])
    out = invoke_structured(model, [HumanMessage("go")], GeneratedQueries, use_tool_calling=False)
    assert out.value.queries == ["fine"] and out.attempts == 2
    assert "nests too deeply" in model.requests[1][-1].content
    stuck = ScriptedChatModel(script=[AIMessage(deep)] * 2)
    with pytest.raises(StructuredOutputError, match="nests too deeply") as err:
        invoke_structured(stuck, [HumanMessage("go")], GeneratedQueries, max_retries=1, use_tool_calling=False)
    assert not err.value.transient


def test_an_unparsable_tool_call_is_answered_and_retried_over_http():
    """The client keeps arguments it cannot parse apart (``invalid_tool_calls``); the retry must answer
    that call with a tool message, or the next request is one the API refuses."""
    script = [tool_reply("GeneratedQueries", '{"queries": [' + "[" * 5000 + "]" * 5000 + "]}"),
              tool_reply("GeneratedQueries", {"queries": ["ok"]})]
    with OpenAIStubServer(script) as stub:
        out = invoke_structured(_client(stub), [HumanMessage("go")], GeneratedQueries, retry=FAST)
        second = stub.requests[1]["messages"]
    assert out.value.queries == ["ok"]
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == second[-2]["tool_calls"][0]["id"]


# ------------------------------------------------------------------ QueryGen against a flaky endpoint

@pytest.fixture(scope="module")
def gold_turns(tmp_path_factory) -> dict[str, list[list[dict]]]:
    """First user message -> each turn's gold calls, from an offline run of the same slots (the rollout
    model below sees the same template queries, so the stub can answer like a perfect agent)."""
    store = tmp_path_factory.mktemp("offline") / "records.sqlite"
    make_graph().invoke(RUN, context=QueryGenContext(rollouts=1, offline=True, store_path=str(store)))
    out = {}
    for rec in RecordStore(store).query():
        first = next(m.content for m in rec.messages if m.role == "user")
        out[first] = [[{"name": c.name, "arguments": c.arguments} for c in t.gold_calls] for t in rec.turns]
    assert len(out) >= 4
    return out


def _solver(gold_turns):
    """The stub's answer to a rollout request: the next gold call of the current turn, else "Done."."""
    def respond(body):
        msgs = body["messages"]
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        turns = gold_turns[msgs[users[0]]["content"]]
        calls = turns[len(users) - 1] if len(users) <= len(turns) else []
        made = sum(1 for m in msgs[users[-1]:] if m["role"] == "assistant" and m.get("tool_calls"))
        return tool_reply(calls[made]["name"], calls[made]["arguments"]) if made < len(calls) else text_reply("Done.")
    return respond


def _digest(body) -> int:
    return int(hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest(), 16)


def _run(stub, store, retries: int = 4, workers: int = 0):
    models = {"rollout": {"model": "stub-model", "base_url": stub.url, "api_key_env": "ENVFACTORY_TEST_NO_KEY",
                          "max_retries": retries, "retry_wait": 0.001, "retry_wait_max": 0.02}}
    out = make_graph().invoke(RUN, context=QueryGenContext(rollouts=1, models=models, store_path=str(store),
                                                           workers=workers))
    accepted = {r.key for r in RecordStore(store).query(status="accepted")}
    return out["summary"], accepted, {r.key for r in RecordStore(store).query()}


@pytest.fixture(scope="module")
def clean_run(gold_turns, tmp_path_factory):
    """The summary and accepted task keys of a run against the endpoint when it never fails."""
    with OpenAIStubServer(responder=_solver(gold_turns)) as stub:
        summary, accepted, _ = _run(stub, tmp_path_factory.mktemp("clean") / "records.sqlite")
    assert summary["not_done"] == 0 and len(accepted) >= 4
    return summary, accepted


def test_querygen_against_a_flaky_endpoint_accepts_what_a_clean_run_accepts(gold_turns, clean_run, tmp_path):
    clean, clean_accepted = clean_run

    def flaky(body, attempt):  # about a third of requests fail once or twice: 503s and dropped connections
        h = _digest(body)
        if attempt == 1 and h % 3 == 0:
            return "503"
        if attempt <= 2 and h % 4 == 1:
            return "reset"
        return None

    with OpenAIStubServer(responder=_solver(gold_turns), faults=flaky) as stub:
        summary, accepted, _ = _run(stub, tmp_path / "flaky.sqlite")
        faults = list(stub.faults_sent)
    assert faults.count("503") >= 3 and faults.count("reset") >= 3, faults
    assert summary["not_done"] == 0 and summary["rejected_by_reason"] == clean["rejected_by_reason"]
    assert accepted == clean_accepted


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)], ids=["threads", "ray actors"])
def test_a_task_whose_model_stays_down_is_not_done_and_the_next_run_finishes_it(gold_turns, clean_run, tmp_path, workers,
                                                                                  request):
    _, clean_accepted = clean_run
    if workers:
        request.getfixturevalue("local_ray")  # workers > 0: the slots run on Ray actors
    down_for = sorted(gold_turns)[0]  # every request of this one task fails, for good

    def outage(body, attempt):
        return "503" if next(m["content"] for m in body["messages"] if m["role"] == "user") == down_for else None

    store = tmp_path / "records.sqlite"
    with OpenAIStubServer(responder=_solver(gold_turns), faults=outage) as stub:
        summary, accepted, stored = _run(stub, store, retries=2, workers=workers)
        assert stub.faults_sent == ["503"] * 3  # the first call and its two retries, then the task stops
    assert summary["not_done"] == 1 and summary["chains"] == len(stored)  # nothing stored for it
    assert not any(r.startswith("infrastructure") for r in summary["rejected_by_reason"])
    assert len(accepted) == len(clean_accepted) - 1 and accepted < clean_accepted
    with OpenAIStubServer(responder=_solver(gold_turns)) as stub:  # the endpoint is back: the rerun finishes it
        summary, accepted, _ = _run(stub, store)
    assert summary["not_done"] == 0 and summary["chains"] == 1 and summary["skipped_as_done"] == len(stored)
    assert accepted == clean_accepted


def test_a_query_model_that_stays_down_leaves_the_task_not_done(tmp_path):
    class Down(ScriptedChatModel):
        def _generate(self, *args, **kwargs):
            raise ConnectionResetError("connection reset by peer")

    store = tmp_path / "records.sqlite"
    ctx = QueryGenContext(rollouts=1, store_path=str(store), chat_models={"query": Down(script=[])},
                          models={"query": {"max_retries": 1, "retry_wait": 0.001}})
    out = make_graph().invoke({**RUN, "n": 2}, context=ctx)
    assert out["summary"]["not_done"] == 2 and out["summary"]["chains"] == 0 and len(RecordStore(store)) == 0


# ------------------------------------------------------------------ settings and the rollout

def test_configured_clients_leave_retries_to_the_role_policy(monkeypatch):
    from envfactory.agents.models import ModelSettings, resolve_model, retry_policy_for
    settings = ModelSettings.load(overrides={"rollout": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}}, environ={})
    client = resolve_model("rollout", settings, environ={})
    assert client.max_retries == 0  # attempts never multiply: our layer retries, with the role's policy
    assert settings.roles["rollout"].retry_policy() == RetryPolicy(retries=4, wait=0.5, wait_max=20.0)
    monkeypatch.setenv("ENVFACTORY_JUDGE_MAX_RETRIES", "7")
    monkeypatch.setenv("ENVFACTORY_RETRY_WAIT", "0.25")
    assert retry_policy_for("judge") == RetryPolicy(retries=7, wait=0.25, wait_max=20.0)
    assert retry_policy_for("query", {"query": {"retry_wait_max": 3}}) == RetryPolicy(retries=4, wait=0.25, wait_max=3)
    with pytest.raises(ValueError, match="max_retries"):
        ModelSettings.load(overrides={"query": {"max_retries": -1}}, environ={})


def test_a_rollout_call_whose_arguments_are_not_json_is_a_format_error_the_agent_is_told_about(tmp_path):
    from envfactory.agents.query_agent import split_turns
    from envfactory.graphs.querygen.slots import slot_chains
    chain = next(c for c in slot_chains(["library"], 8, seed=11) if any(not call.read_only for call in c.calls))
    turns = split_turns(chain, chain.seed)
    first = chain.calls[turns[0][0]]
    script = [tool_reply(first.tool, '{"' + first.tool + '": [[[')]  # cut off mid-way
    for idx in turns:
        script += [tool_reply(chain.calls[i].tool, chain.calls[i].arguments) for i in idx] + [text_reply("Done.")]
    with OpenAIStubServer(script) as stub:
        make_graph().invoke({"envs": ["library"], "seeds": [chain.seed]},
                            context=QueryGenContext(rollouts=1, chat_models={"rollout": _client(stub)},
                                                    store_path=str(tmp_path / "records.sqlite")))
        second = stub.requests[1]["messages"]
    [rec] = RecordStore(tmp_path / "records.sqlite").query()
    reward = rec.verification.reward
    assert reward["format_penalty"] > 0 and reward["state"] == 1.0, reward  # counted, and the task still solved
    assert second[-1]["role"] == "tool" and "are not a JSON object" in second[-1]["content"]
    assert second[-1]["tool_call_id"] == second[-2]["tool_calls"][0]["id"]
