"""QueryGen slots: each slot samples its own chain from its own block of seeds, so a run's chains do not
depend on its size, and named seeds reproduce exactly those tasks. (Slots on Ray actors:
test_querygen_ray.py.)"""
from __future__ import annotations

import pytest

from envfactory.graphs.querygen import SEEDS_PER_SLOT, QueryGenContext, make_graph, run_records, slot_chains, slot_seeds


def test_slot_seeds_are_disjoint_and_do_not_depend_on_the_run_size():
    seeds = [s for slot in range(6) for s in slot_seeds(slot, 100)]
    assert len(seeds) == len(set(seeds)) == 6 * SEEDS_PER_SLOT
    assert list(slot_seeds(2, 100)) == list(range(100 + 2 * SEEDS_PER_SLOT, 100 + 3 * SEEDS_PER_SLOT))
    small, large = slot_chains(["library"], 2, seed=5), slot_chains(["library"], 4, seed=5)
    assert [c.chain_id for c in small] == [c.chain_id for c in large[:2]]


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
