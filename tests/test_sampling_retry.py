"""Chain sampling redraws a refused call before discarding the chain: chains stay deterministic,
refused attempts leave no trace in the gold calls or the state, and chains that still fail say why."""
from __future__ import annotations

import re

import pytest

from envfactory.data.reward import gold_calls_from_trajectory, replay_gold
from envfactory.envs import Environment
from envfactory.envs.runtime.errors import ToolError
from envfactory.envs.chains.grounding import Grounder
from envfactory.envs.chains.sampling import ChainSampler, Discarded, GoldTrajectory, SamplerConfig
from envfactory.envs.chains.confirm import build_tool_graph

SEEDS = range(80)


@pytest.fixture(scope="module")
def library_graph():
    return build_tool_graph(Environment.load("library"))


@pytest.fixture(scope="module")
def outcomes(library_graph):
    """Per seed: (without retries, with retries), each from its own sampler."""
    plain = ChainSampler(library_graph, SamplerConfig(call_retries=0, plan_retries=0, backtracks=0))
    retrying = ChainSampler(library_graph, SamplerConfig())
    return {seed: (plain.sample(seed), retrying.sample(seed)) for seed in SEEDS}


def test_same_seed_same_chain_whatever_was_sampled_before(library_graph, outcomes):
    # a fresh sampler (empty grounding cache, nothing sampled before) gives the very same chains
    fresh = ChainSampler(library_graph, SamplerConfig())
    for seed in reversed(SEEDS):
        again, first = fresh.sample(seed), outcomes[seed][1]
        assert type(again) is type(first)
        assert again.model_dump() == first.model_dump()


def test_chains_kept_without_retries_are_unchanged(outcomes):
    # the first attempt draws exactly as before: retries only change chains that used to be dropped
    kept = [(p, r) for p, r in outcomes.values() if isinstance(p, GoldTrajectory)]
    assert kept
    for plain, retried in kept:
        assert isinstance(retried, GoldTrajectory)
        assert retried.model_dump() == plain.model_dump()


def test_retries_rescue_refused_chains_and_the_gold_replays(library_graph, outcomes):
    rescued = [(p, r) for p, r in outcomes.values() if isinstance(p, Discarded) and isinstance(r, GoldTrajectory)]
    refused = [(p, r) for p, r in rescued if " failed [domain]" in p.reason]
    assert len(refused) >= 3, "retries rescued almost no chain refused on its first draw"
    envs = dict(library_graph.envs)
    for plain, chain in rescued:
        if plain.plan and len(plain.plan) >= 2:  # not re-planned: same plan, the failing call now succeeded
            assert [c.tool for c in chain.calls] == plain.plan
        if (m := re.match(r"call (\d+) (\w+) failed", plain.reason)):
            assert chain.calls[int(m.group(1)) - 1].tool == m.group(2)
        # the gold calls alone (no refused attempt) rebuild the sampler's final state and changes
        ref = replay_gold(envs, gold_calls_from_trajectory(chain))
        assert ref.final_hashes == chain.final_hashes
        assert sorted(ref.cells["library"], key=repr) == sorted(chain._gold_cells["library"], key=repr)


def test_discard_rate_drops(outcomes):
    plain = sum(isinstance(p, Discarded) for p, _ in outcomes.values())
    retried = sum(isinstance(r, Discarded) for _, r in outcomes.values())
    assert retried < plain


def test_a_call_refused_on_every_draw_is_discarded_with_its_reason(monkeypatch):
    env = Environment.load("library")
    tg = build_tool_graph(env)
    tool = env.tools["checkout_book"]
    runs = []

    def refuse(ctx, **kwargs):
        runs.append(kwargs)
        raise ToolError("no copy of that book today")

    monkeypatch.setattr(tool, "fn", refuse)
    config = SamplerConfig(call_retries=3, backtracks=0)  # each discard then stems from one run of redraws
    sampler = ChainSampler(tg, config)
    hits = redrawn = 0
    for seed in range(60):
        before = len(runs)
        out = sampler.sample(seed)
        if len(runs) == before:
            continue  # checkout_book was not reached
        hits += 1
        assert isinstance(out, Discarded)
        m = re.fullmatch(r"call (\d+) checkout_book failed \[domain\]: no copy of that book today(?: \((\d+) attempts\))?",
                         out.reason)
        assert m, out.reason
        attempts = int(m.group(2) or 1)
        assert attempts == len(runs) - before <= 1 + config.call_retries
        assert len({repr(sorted(r.items())) for r in runs[before:]}) == attempts  # never the same call twice
        redrawn += attempts > 1
    assert hits >= 3 and redrawn >= 3


def test_grounding_cache_gives_the_values_sql_gives(library_graph):
    env = library_graph.envs["library"]
    grounder = Grounder(env)
    with env.episode() as ep:
        for spec in env.tool_specs:
            for seed in range(5):
                direct = grounder.arguments(spec.name, ep, seed=seed, optional_rate=0.5)
                cached = grounder.arguments(spec.name, ep, seed=seed, optional_rate=0.5, initial_state=True)
                assert cached == direct
        assert grounder._initial  # the cache was used


def test_benchmark_reports_both_samplers_on_the_same_seeds(capsys):
    from envfactory.bench.sampling import bench_sampling

    results = bench_sampling(["library"], seeds=12, progress=False, repeat=1)
    baseline, current = results["library"]["baseline"], results["library"]["current"]
    assert baseline["samples"] == current["samples"] == 12
    assert current["kept"] >= baseline["kept"]  # redraws only ever rescue chains (first draws are unchanged)
    table = capsys.readouterr().out
    assert "library" in table and "CPU per kept chain" in table


def test_backtracking_to_reads_rescues_more_and_its_gold_replays():
    env = Environment.load("devtools")  # runs and deployments are picked from lists: backtracking pays there
    tg = build_tool_graph(env)
    retrying, backtracking = ChainSampler(tg, SamplerConfig()), ChainSampler(tg, SamplerConfig(backtracks=2))
    more = 0
    for seed in range(40):
        retried, chain = retrying.sample(seed), backtracking.sample(seed)
        if isinstance(retried, GoldTrajectory):  # a backtrack only follows a call that failed every redraw
            assert chain.model_dump() == retried.model_dump()
        elif isinstance(chain, GoldTrajectory):
            more += 1
            ref = replay_gold({"devtools": env}, gold_calls_from_trajectory(chain))
            assert ref.final_hashes == chain.final_hashes
            assert sorted(ref.cells["devtools"], key=repr) == sorted(chain._gold_cells["devtools"], key=repr)
        else:
            assert chain.reason == retried.reason  # still dropped: the first failure is the reason
    assert more >= 2
