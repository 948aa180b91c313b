"""QueryGen's offline tier end to end: real verified trajectories with no model, a store that
resumes without losing or duplicating, and the leakage check."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from envfactory.agents.query_agent import leaked_terms, split_turns
from envfactory.data.store import RecordStore
from envfactory.envs.chains.sampling import GoldTrajectory
from envfactory.graphs.querygen import QueryGenContext, make_graph, run_records
from envfactory.graphs.querygen.resources import _sampler


def test_offline_run_produces_verified_labelled_trajectories(tmp_path):
    ctx = QueryGenContext(rollouts=2, store_path=str(tmp_path / "r.sqlite"))
    out = make_graph().invoke({"envs": ["library"], "n": 3, "seed": 1}, context=ctx)
    assert out["summary"]["accepted"] == 3 and len(out["record_keys"]) == 3
    assert "records" not in out  # the graph's state holds keys and counts; the bodies are in the store
    for rec in run_records(out, ctx):
        v = rec["verification"]
        assert v["accepted"] and v["pass_rate"] == 1.0 and v["reward"]["state_equal"]
        assert rec["provenance"]["tiers"] == {"query": "offline:template-verbalizer", "refine": "offline:no-refinement",
                                              "rollout": "offline:rule-solver"}
        roles = [m["role"] for m in rec["messages"]]
        assert roles[0] == "system" and roles[1] == "user" and roles[-1] == "assistant"
        called = [c["name"] for m in rec["messages"] for c in m["tool_calls"]]
        assert called == [c["name"] for t in rec["turns"] for c in t["gold_calls"]]  # the solver read them from the text
    assert len(RecordStore(tmp_path / "r.sqlite")) == 3


def test_resume_skips_finished_tasks_without_duplicates(tmp_path):
    store = str(tmp_path / "r.sqlite")
    g = make_graph()
    first = g.invoke({"envs": ["library"], "n": 2, "seed": 0}, context=QueryGenContext(rollouts=1, store_path=store))
    second = g.invoke({"envs": ["library"], "n": 5, "seed": 0}, context=QueryGenContext(rollouts=1, store_path=store))
    assert second["summary"]["skipped_as_done"] == 2 and second["summary"]["accepted"] == 3
    keys = [r.key for r in RecordStore(store).query()]
    assert len(keys) == 5 == len(set(keys))
    assert set(first["record_keys"]) <= set(keys)


@pytest.mark.slow
def test_killed_generate_resumes_with_nothing_lost_or_duplicated(tmp_path):
    store = tmp_path / "r.sqlite"
    cmd = [sys.executable, "-m", "envfactory.cli.main", "generate", "library", "--n", "12", "--rollouts", "40",
           "--concurrency", "1", "--store", str(store), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if store.exists():
            try:
                done = sqlite3.connect(store).execute("SELECT COUNT(*) FROM records").fetchone()[0]
            except sqlite3.Error:
                done = 0
            if done >= 2:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r.key for r in RecordStore(store).query()}
    assert 2 <= len(before) < 12, "the run was not interrupted mid-way"
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    after = [r.key for r in RecordStore(store).query()]
    assert len(after) == 12 == len(set(after)) and before <= set(after)


def test_leakage_check_flags_tool_names_keys_and_hidden_ids():
    leaks = leaked_terms("please run checkout_book with member_id 17 for book 42",
                         ["checkout_book"], ["member_id", "book_id"], [42])
    assert leaks == ["tool name checkout_book", "parameter key member_id", "id 42 that comes from a tool output"]
    assert leaked_terms("Could you lend me the Copper Atlas? My email is ada@example.org",
                        ["checkout_book"], ["member_id"], [42]) == []


def test_turn_split_is_deterministic_and_covers_every_call():
    sampler = _sampler(("library",), 1)
    chains = [t for t in (sampler.sample(s) for s in range(20)) if isinstance(t, GoldTrajectory)]
    for chain in chains:
        turns = split_turns(chain, chain.seed)
        assert turns == split_turns(chain, chain.seed)
        assert [i for t in turns for i in t] == list(range(len(chain.calls)))


def test_leakage_check_ignores_plain_words_and_dates():
    assert leaked_terms("please unsubscribe me", ["unsubscribe"], [], []) == []
    assert leaked_terms('deliver on "2026-05-11" please', [], [], [11]) == []
    assert leaked_terms("order 11 please", [], ["order_id"], [11]) == ["id 11 that comes from a tool output"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2", "ray"])
def test_ctrl_c_stops_generate_soon_and_a_rerun_resumes(tmp_path, workers):
    store = tmp_path / "r.sqlite"
    cmd = [sys.executable, "-m", "envfactory.cli.main", "generate", "library", "commerce", "--n", "3000",
           "--rollouts", "4", "--store", str(store), "--json",
           *(["--executor", "ray"] if workers == "ray" else ["--workers", workers])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if store.exists() and sqlite3.connect(store).execute("SELECT COUNT(*) FROM records").fetchone()[0] >= 20:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group, workers included
    try:
        code = proc.wait(timeout=60)  # without the stop it works through all 3000 slots first
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = proc.stderr.read().decode()
    assert code == 130, err[-2000:]
    assert "run the same command again to resume" in err and "Traceback" not in err
    done = {r.key for r in RecordStore(store).query()}
    assert 20 <= len(done) < 3000
    again = subprocess.run(cmd[:7] + [str(len(done) // 2)] + cmd[8:], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["accepted"] == 0  # every task already there


def test_slots_go_out_in_waves_with_the_same_result(tmp_path):
    import threading

    from envfactory.graphs.querygen import run_records
    g = make_graph()
    one = g.invoke({"envs": ["library"], "n": 5, "seed": 2}, context=QueryGenContext(rollouts=1, store_path=None))
    nodes, waves = [], QueryGenContext(rollouts=1, slots_per_wave=2, store_path=None)  # no store: both runs make them
    final = None
    for mode, chunk in g.stream({"envs": ["library"], "n": 5, "seed": 2}, context=waves, stream_mode=["updates", "values"]):
        if mode == "updates":
            nodes += list(chunk)
        else:
            final = chunk
    assert nodes.count("next_wave") == 3 and nodes.count("process_chain") == 5  # waves of 2, 2 and 1
    assert final["summary"] == one["summary"] and sorted(final["record_keys"]) == sorted(one["record_keys"])
    assert [r["key"] for r in run_records(final)] == final["record_keys"]
    # asked to stop after the first wave: the slots of the later waves are counted, never sent
    stop = threading.Event()
    seen = 0
    for mode, chunk in g.stream({"envs": ["library"], "n": 5, "seed": 40}, context=waves,
                                config={"configurable": {"stop": stop}}, stream_mode=["updates", "values"]):
        if mode == "updates" and "process_chain" in chunk:
            seen += 1
            stop.set()
        elif mode == "values":
            final = chunk
    assert seen == 2 and final["summary"]["slots_not_run"] == 3
    with pytest.raises(ValueError, match="context key 'slots_per_wave' must be at least 1, got 0"):
        g.invoke({"envs": ["library"], "n": 1}, context={"slots_per_wave": 0})


def test_records_of_a_run_come_from_its_store_or_the_recent_ones_in_memory(tmp_path):
    from envfactory.graphs.querygen import run_records
    with pytest.raises(LookupError, match="keeps the last 4096 records"):
        run_records({"record_keys": ["no-such-key"]})
    ctx = QueryGenContext(store_path=str(tmp_path / "r.sqlite"))
    with pytest.raises(LookupError, match="not in the record store"):
        run_records({"record_keys": ["no-such-key"]}, ctx)
