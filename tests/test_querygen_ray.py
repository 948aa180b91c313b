"""QueryGen on Ray (``QueryGenContext.executor = "ray"``): a local Ray instance on loopback gives the
records threads give, the parent stays the store's one writer, and a resumed run redoes nothing."""
from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is part of dev")

from envfactory.bench.querygen import GoldReplayModel, gold_scripts  # noqa: E402
from envfactory.data.store import RecordStore  # noqa: E402
from envfactory.graphs.querygen import QueryGenContext, make_graph  # noqa: E402
from envfactory.graphs.querygen import ray_executor  # noqa: E402
from envfactory.graphs.querygen.resources import run_records  # noqa: E402


def _timeless(records):  # created_at is the wall clock; everything else must match
    out = [{**r, "provenance": {k: v for k, v in r["provenance"].items() if k != "created_at"}} for r in records]
    return sorted(out, key=lambda r: r["key"])


def test_ray_actors_give_the_records_threads_give_and_a_rerun_redoes_nothing(local_ray, tmp_path):
    graph = make_graph()
    model = GoldReplayModel(latency=0.0, scripts=gold_scripts("library", 4, 0, QueryGenContext(rollouts=1)))
    by_threads = graph.invoke({"envs": ["library"], "n": 4, "seed": 0},
                              context=QueryGenContext(rollouts=1, chat_models={"rollout": model}))
    calls_here = model.calls
    store = tmp_path / "r.sqlite"
    ctx = QueryGenContext(rollouts=1, chat_models={"rollout": model}, executor="ray", store_path=str(store))
    by_ray = graph.invoke({"envs": ["library"], "n": 4, "seed": 0}, context=ctx, config={"max_concurrency": 4})
    assert by_ray["summary"]["accepted"] == 4 and by_ray["summary"]["chains"] == 4
    assert _timeless(run_records(by_ray, ctx)) == _timeless(run_records(by_threads))
    assert model.calls == calls_here  # the actors' copies of the model answered, not this one
    stored = sorted(r.key for r in RecordStore(store).query())
    assert stored == sorted(by_ray["record_keys"])  # the parent stored what the actors made
    assert len(ray_executor.pool(ctx).actors()) == 2  # one per CPU of the cluster

    again = graph.invoke({"envs": ["library"], "n": 6, "seed": 0},
                         context=QueryGenContext(rollouts=1, chat_models={"rollout": model}, executor="ray",
                                                 store_path=str(store)))
    assert again["summary"]["skipped_as_done"] == 4  # the four finished tasks are not redone...
    assert len(again["record_keys"]) == 2  # ...and only the two new slots ran
    assert len(list(RecordStore(store).query())) == 6


def test_a_non_bundled_environment_travels_to_the_actors_with_its_trust(local_ray, tmp_path, monkeypatch):
    """A package on this machine's catalog path reaches actors through the object store, not the
    filesystem; its code runs there only if this process trusts it (the user's grant travels with it)."""
    import shutil

    from envfactory.envs.runtime.packages import CATALOG_DIR
    from envfactory.envs.runtime.trust import grant_trust
    monkeypatch.setenv("ENVFACTORY_CONFIG_DIR", str(tmp_path / "config"))  # this test's trust store
    catalog = tmp_path / "catalog"
    for name in ("library_copy", "library_untrusted"):
        shutil.copytree(CATALOG_DIR / "library", catalog / name)
        manifest = json.loads((catalog / name / "env.json").read_text())
        (catalog / name / "env.json").write_text(json.dumps({**manifest, "name": name}))
    grant_trust(catalog / "library_copy")
    monkeypatch.setenv("ENVFACTORY_CATALOG_PATH", str(catalog))
    shipped = ray_executor._package("library_copy")
    assert ray_executor._package("library_copy") is shipped  # packed once per content
    assert shipped[2] and not ray_executor._package("library_untrusted")[2]
    assert ray_executor._package("library") is None  # bundled: every node has it
    ctx = QueryGenContext(rollouts=1, executor="ray")
    p = ray_executor.pool(ctx)
    runs = {name: ray_executor._run_args(ctx, [name]) for name in ("library_copy", "library_untrusted")}
    shutil.rmtree(catalog)  # gone from the filesystem: the actors can only load their own unpacked copies
    out, _ = p.call("run", {"slot": 0, "envs": ["library_copy"], "seed": 0}, runs["library_copy"])
    assert out["records"] and out["records"][0]["envs"][0]["name"] == "library_copy"
    assert out["records"][0]["verification"]["accepted"]
    with pytest.raises(Exception, match="library_untrusted"):
        p.call("run", {"slot": 0, "envs": ["library_untrusted"], "seed": 0}, runs["library_untrusted"])


def test_generate_runs_on_ray_when_asked_and_refuses_bad_flags(local_ray, tmp_path, capsys):
    from envfactory.cli.main import main
    store = tmp_path / "r.sqlite"
    assert main(["generate", "library", "--n", "3", "--rollouts", "1", "--executor", "ray",
                 "--store", str(store), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["accepted"] == 3 and len(list(RecordStore(store).query())) == 3
    assert main(["generate", "library", "--n", "3", "--ray-address", "auto", "--store", str(store)]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err


def test_an_unknown_executor_is_refused_before_any_slot_runs():
    with pytest.raises(ValueError, match="context key 'executor' must be one of 'threads', 'ray', got 'dask'"):
        make_graph().invoke({"envs": ["library"], "n": 1}, context=QueryGenContext(executor="dask"))


class _DiesOnQuery(GoldReplayModel):
    """Replays the gold, except that asked ``query`` it ends the process it runs in (an actor that
    crashes, e.g. out of memory, on one task); in the test process it refuses instead."""

    query: str = ""

    def _reply(self, messages):
        from envfactory.graphs.querygen.resources import _worker_flag
        if any(m.type == "human" and m.content == self.query for m in messages):
            if not _worker_flag["in_worker"]:
                raise AssertionError("the poisoned task ran in the test process")
            import os
            os._exit(1)
        return super()._reply(messages)


def test_a_killed_actor_loses_no_task(local_ray, tmp_path):
    import threading
    import time
    scripts = gold_scripts("library", 4, 40, QueryGenContext(rollouts=1))
    store = tmp_path / "r.sqlite"
    ctx = QueryGenContext(rollouts=1, chat_models={"rollout": GoldReplayModel(latency=0.4, scripts=scripts)},
                          executor="ray", store_path=str(store))
    p = ray_executor.pool(ctx)
    out = {}
    run = threading.Thread(target=lambda: out.update(make_graph().invoke({"envs": ["library"], "n": 4, "seed": 40}, context=ctx,
                                                                         config={"max_concurrency": 4})))
    run.start()
    deadline = time.time() + 60
    while time.time() < deadline and not all(p._busy.values()):  # both actors have slots in flight
        time.sleep(0.02)
    victim = next(k for k, n in p._busy.items() if n)
    ray.kill(p._actors[victim])
    run.join(timeout=120)
    assert out["summary"]["accepted"] == 4 and not out["summary"]["not_done"], out["summary"]
    assert victim not in p._actors and len(p._actors) == 2  # replaced
    assert len(list(RecordStore(store).query())) == 4


def test_a_slot_whose_actor_dies_twice_is_not_done_and_the_next_run_finishes_it(local_ray, tmp_path):
    ctx = QueryGenContext(rollouts=1)
    scripts = gold_scripts("library", 3, 80, ctx)
    poison = next(k for k in scripts if len(k) == 1)[0]  # the first user query of one task
    store = tmp_path / "r.sqlite"
    dying = _DiesOnQuery(latency=0.0, scripts=scripts, query=poison)
    out = make_graph().invoke({"envs": ["library"], "n": 3, "seed": 80},
                              context=QueryGenContext(rollouts=1, chat_models={"rollout": dying}, executor="ray",
                                                      store_path=str(store)),
                              config={"max_concurrency": 1})  # one slot at a time: only the poisoned one dies
    assert out["summary"]["not_done"] == 1 and out["summary"]["accepted"] == 2, out["summary"]
    assert len(list(RecordStore(store).query())) == 2
    healthy = _DiesOnQuery(latency=0.0, scripts=scripts, query="no such query")  # same model name: same task keys
    again = make_graph().invoke({"envs": ["library"], "n": 3, "seed": 80},
                                context=QueryGenContext(rollouts=1, chat_models={"rollout": healthy}, executor="ray",
                                                        store_path=str(store)))
    assert again["summary"]["skipped_as_done"] == 2 and again["summary"]["accepted"] == 1
