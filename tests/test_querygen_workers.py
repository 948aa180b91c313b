"""QueryGen slots: each slot samples its own chain from its own seeds, and worker processes give the
same records as threads, run many slots at once each, and leave the parent process as the store's
one writer."""
from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from envfactory.data.store import RecordStore
from envfactory.bench.querygen import GoldReplayModel, gold_scripts
from envfactory.graphs.querygen import SEEDS_PER_SLOT, QueryGenContext, make_graph, run_records, slot_chains, slot_seeds
from envfactory.graphs.querygen.workers import worker_cpu_seconds


def _timeless(records):  # created_at is the wall clock; everything else must match
    out = [{**r, "provenance": {k: v for k, v in r["provenance"].items() if k != "created_at"}} for r in records]
    return sorted(out, key=lambda r: r["key"])


def test_slot_seeds_are_disjoint_and_do_not_depend_on_the_run_size():
    seeds = [s for slot in range(6) for s in slot_seeds(slot, 100)]
    assert len(seeds) == len(set(seeds)) == 6 * SEEDS_PER_SLOT
    assert list(slot_seeds(2, 100)) == list(range(100 + 2 * SEEDS_PER_SLOT, 100 + 3 * SEEDS_PER_SLOT))
    small, large = slot_chains(["library"], 2, seed=5), slot_chains(["library"], 4, seed=5)
    assert [c.chain_id for c in small] == [c.chain_id for c in large[:2]]


def test_worker_processes_give_the_records_threads_give(tmp_path):
    graph = make_graph()
    ctx = QueryGenContext(rollouts=1)
    scripts = gold_scripts("library", 3, 0, ctx)
    model = GoldReplayModel(latency=0.0, scripts=scripts)
    by_threads = graph.invoke({"envs": ["library"], "n": 3, "seed": 0},
                              context=QueryGenContext(rollouts=1, chat_models={"rollout": model}))
    before = worker_cpu_seconds()
    store = tmp_path / "r.sqlite"
    by_workers = graph.invoke({"envs": ["library"], "n": 3, "seed": 0},
                              context=QueryGenContext(rollouts=1, chat_models={"rollout": model}, workers=2,
                                                      store_path=str(store)),
                              config={"max_concurrency": 2})
    assert by_workers["summary"]["accepted"] == 3 and by_workers["summary"]["chains"] == 3
    assert _timeless(run_records(by_workers, QueryGenContext(store_path=str(store)))) == _timeless(run_records(by_threads))
    assert worker_cpu_seconds() > before  # the slots ran in the workers, which report their CPU
    assert sorted(r.key for r in RecordStore(store).query()) == sorted(by_workers["record_keys"])
    again = graph.invoke({"envs": ["library"], "n": 3, "seed": 0},
                         context=QueryGenContext(rollouts=1, chat_models={"rollout": model}, workers=2,
                                                 store_path=str(store)))
    assert again["summary"]["skipped_as_done"] == 3 and not again.get("record_keys")


def test_workers_refuse_a_context_that_cannot_travel():
    class Unpicklable:
        lock = None

        def __init__(self):
            self.lock = threading.Lock()

    with pytest.raises(ValueError, match="picklable"):
        make_graph().invoke({"envs": ["library"], "n": 1, "seed": 0},
                            context=QueryGenContext(rollouts=1, chat_models={"rollout": Unpicklable()}, workers=1))


def test_named_seeds_reproduce_exactly_those_tasks():
    from envfactory.envs.chains.sampling import GoldTrajectory
    from envfactory.graphs.querygen.resources import _sampler
    sampler = _sampler(("library",), 1)
    kept = [s for s in range(20) if isinstance(sampler.sample(s), GoldTrajectory)][:2]
    dropped = next(s for s in range(20) if not isinstance(sampler.sample(s), GoldTrajectory))
    out = make_graph().invoke({"envs": ["library"], "seeds": kept + [dropped]}, context=QueryGenContext(rollouts=1))
    assert sorted(r["provenance"]["chain_id"] for r in run_records(out)) == sorted(f"library-{s}" for s in kept)
    assert out["summary"]["slots_without_chain"] == 1 and out["summary"]["discarded_chains"] == 1
    with pytest.raises(ValueError, match="seeds"):
        make_graph().invoke({"envs": ["library"], "seeds": ["7"]}, context=QueryGenContext(rollouts=1))


def _die(state, context):
    import os
    os._exit(3)


def _echo(state, context):
    return {"state": state, "context": context}


def test_a_dead_worker_fails_its_slot_clearly_and_the_next_slot_gets_a_new_pool():
    from envfactory.graphs.querygen import workers as querygen_workers
    with pytest.raises(RuntimeError, match="worker process died"):
        querygen_workers.run_in_worker(1, _die, {"slot": 0}, {"setting": 1})
    assert querygen_workers.run_in_worker(1, _echo, {"slot": 1}, {"setting": 2}) == {"state": {"slot": 1}, "context": {"setting": 2}}


_arrived: dict[str, int] = {}


async def _meet(state, context):
    """Waits (in the worker) until ``state["expect"]`` slots of its room have arrived, or gives up."""
    _arrived[state["room"]] = _arrived.get(state["room"], 0) + 1
    for _ in range(500):
        if _arrived[state["room"]] >= state["expect"]:
            return True
        await asyncio.sleep(0.01)
    return False


def _fail(state, context):
    raise KeyError(f"no such thing: {state['what']}")


def test_one_worker_runs_many_slots_at_once_and_passes_errors_back():
    from envfactory.graphs.querygen import workers as querygen_workers
    room = uuid.uuid4().hex
    with ThreadPoolExecutor(6) as threads:  # six slots, one worker: they only all arrive if they overlap
        met = list(threads.map(lambda _: querygen_workers.run_in_worker(1, _meet, {"room": room, "expect": 6}, {}),
                               range(6)))
    assert met == [True] * 6
    with pytest.raises(KeyError, match="no such thing: cake"):
        querygen_workers.run_in_worker(1, _fail, {"what": "cake"}, {})


def test_model_steps_run_in_workers_with_their_retries():
    from tests.doubles import ScriptedChatModel, malformed, tool_call_message
    chain = slot_chains(["library"], 1, seed=3)[0]
    from envfactory.agents.query_agent import split_turns, template_queries
    turns = split_turns(chain, chain.seed)
    # model-written queries must still state what determines the task (the template's words, tagged)
    queries = [f"{q} (request {chr(65 + i)})" for i, q in enumerate(template_queries(chain, turns))]
    solver = []
    for idx in turns:
        solver += [tool_call_message(chain.calls[i].tool, chain.calls[i].arguments) for i in idx] + ["Done."]
    query = ScriptedChatModel(script=[malformed("json"), tool_call_message("GeneratedQueries", {"queries": queries})])
    ctx = QueryGenContext(rollouts=1, workers=1, chat_models={"query": query, "rollout": ScriptedChatModel(script=solver)})
    rec = run_records(make_graph().invoke({"envs": ["library"], "seeds": [chain.seed]}, context=ctx))[0]
    assert rec["verification"]["accepted"], rec["verification"]
    assert rec["provenance"]["tiers"]["query"] == "model" and [t["query"] for t in rec["turns"]] == queries
    broken = ScriptedChatModel(script=[malformed("json"), malformed("shape"), malformed("unknown_tool")])
    ctx = QueryGenContext(rollouts=1, workers=1, chat_models={"query": broken})
    rec = run_records(make_graph().invoke({"envs": ["library"], "seeds": [chain.seed]}, context=ctx))[0]
    assert not rec["verification"]["accepted"] and "after 3 attempt(s)" in rec["verification"]["reason"]


def _read_setting(state, context):
    import os
    return os.environ.get(state["name"])


def test_workers_see_the_parents_environment_as_it_is_now(monkeypatch):
    from envfactory.graphs.querygen import workers as querygen_workers
    name = "ENVFACTORY_TEST_" + uuid.uuid4().hex[:8]
    assert querygen_workers.run_in_worker(1, _read_setting, {"name": name}, {}) is None
    monkeypatch.setenv(name, "set after the workers started")  # e.g. a catalog path or an API key
    assert querygen_workers.run_in_worker(1, _read_setting, {"name": name}, {}) == "set after the workers started"
    monkeypatch.delenv(name)
    assert querygen_workers.run_in_worker(1, _read_setting, {"name": name}, {}) is None


def test_generate_runs_its_chains_in_workers_when_asked(tmp_path, capsys):
    import json

    from envfactory.cli.main import main
    from envfactory.graphs.querygen import workers as querygen_workers
    before = worker_cpu_seconds()
    store = tmp_path / "r.sqlite"
    assert main(["generate", "library", "--n", "3", "--rollouts", "1", "--concurrency", "4", "--workers", "2",
                 "--store", str(store), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["accepted"] == 3 and len(list(RecordStore(store).query())) == 3
    assert worker_cpu_seconds() > before  # the slots ran in worker processes
    assert any(size == 2 for _, size in querygen_workers._pools)


def test_a_slot_that_cannot_be_sent_is_refused_and_forgotten():
    from envfactory.graphs.querygen import workers as querygen_workers
    with pytest.raises(Exception, match="pickle"):
        querygen_workers.run_in_worker(1, _echo, {"lock": threading.Lock()}, {"setting": 3})
    pool = querygen_workers._pool(1)
    assert all(not w.pending for w in pool._workers)  # not counted as running: the pool stays balanced
    assert querygen_workers.run_in_worker(1, _echo, {"slot": 2}, {"setting": 3}) == {"state": {"slot": 2}, "context": {"setting": 3}}


def test_a_context_a_worker_cannot_load_gets_a_clear_error(monkeypatch):
    import sys

    from envfactory.graphs.querygen import workers as querygen_workers
    notebook_class = type("NotebookChatModel", (), {"__module__": "__main__"})  # as if defined in a notebook cell
    monkeypatch.setitem(sys.modules["__main__"].__dict__, "NotebookChatModel", notebook_class)
    with pytest.raises(RuntimeError, match="could not load the run's context.*notebook or __main__"):
        querygen_workers.run_in_worker(1, _echo, {"slot": 0}, {"model": notebook_class()})


def test_configured_endpoints_are_called_from_the_workers(monkeypatch):
    from langchain_openai import ChatOpenAI

    from envfactory.agents.query_agent import split_turns, template_queries
    from tests.doubles import OpenAIStubServer
    from tests.doubles.openai_stub import text_reply, tool_reply
    chain = slot_chains(["library"], 1, seed=3)[0]
    turns = split_turns(chain, chain.seed)
    queries = [f"{q} (please help {chr(65 + i)})" for i, q in enumerate(template_queries(chain, turns))]
    script = [tool_reply("GeneratedQueries", {"queries": queries})]
    for idx in turns:
        script += [tool_reply(chain.calls[i].tool, chain.calls[i].arguments) for i in idx] + [text_reply("Done.")]
    with OpenAIStubServer(script) as stub:
        client = ChatOpenAI(base_url=stub.url, api_key="test", model="stub-model")
        with pytest.raises(ValueError, match="give its settings in QueryGenContext.models"):  # a client cannot travel
            make_graph().invoke({"envs": ["library"], "seeds": [chain.seed]},
                                context=QueryGenContext(rollouts=1, workers=1, chat_models={"rollout": client}))
        monkeypatch.setenv("STUB_KEY", "test")  # set after the workers started: they must see it
        models = {role: {"model": "stub-model", "base_url": stub.url, "api_key_env": "STUB_KEY", "max_retries": 0}
                  for role in ("query", "rollout")}
        out = make_graph().invoke({"envs": ["library"], "seeds": [chain.seed]},
                                  context=QueryGenContext(rollouts=1, workers=1, models=models))
        assert len(stub.requests) == len(script)  # every call reached the endpoint, from the worker
    rec = run_records(out)[0]
    assert rec["verification"]["accepted"], rec["verification"]
    assert rec["provenance"]["models"] == {"query": "stub-model", "rollout": "stub-model"}


class _Unloadable(Exception):
    """An exception the parent cannot rebuild from its pickle (its __init__ needs two arguments)."""

    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def _raise_unloadable(state, context):
    raise _Unloadable(1, 2)


def test_a_result_the_parent_cannot_load_fails_its_slot_not_the_pool():
    from envfactory.graphs.querygen import workers as querygen_workers
    with pytest.raises(RuntimeError, match="could not be loaded here"):
        querygen_workers.run_in_worker(1, _raise_unloadable, {}, {})
    assert querygen_workers.run_in_worker(1, _echo, {"slot": 9}, {}) == {"state": {"slot": 9}, "context": {}}
