"""Every bundled environment passes its own tests with full coverage, deterministically, and
meets the catalog's quality bar."""
from __future__ import annotations

import pytest

from envfactory.envs import Environment, catalog_names
from envfactory.envs.validation.quality import quality_problems
from envfactory.envs.validation.testcases import run_suite

CATALOG = catalog_names()


def test_catalog_is_not_empty():
    assert "library" in CATALOG


@pytest.mark.parametrize("name", CATALOG)
def test_suite_passes_with_full_coverage(name):
    env = Environment.load(name)
    report = run_suite(env)
    failures = {c.name: c.failures for c in report.cases if not c.passed}
    assert not failures, failures
    assert report.uncovered() == []


@pytest.mark.parametrize("name", CATALOG)
def test_suite_is_deterministic(name):
    env = Environment.load(name)
    first, second = run_suite(env), run_suite(env)
    assert [c.step_hashes for c in first.cases] == [c.step_hashes for c in second.cases]
    assert [c.outputs for c in first.cases] == [c.outputs for c in second.cases]


@pytest.mark.parametrize("name", CATALOG)
def test_meets_quality_bar(name):
    assert quality_problems(Environment.load(name)) == []


def test_contamination_guard_flags_mirrored_tool_sets_not_common_verbs():
    from envfactory.envs.validation.contamination import benchmark_overlap
    assert benchmark_overlap(["cancel_reservation", "place_order", "cancel_order", "get_listing"]) == {}
    assert benchmark_overlap(["modify_pending_order_items", "search"]) == {"modify_pending_order_items": "tau2-bench retail"}
    assert benchmark_overlap(["startEngine"]) == {"startEngine": "BFCL multi-turn VehicleControlAPI"}
    assert benchmark_overlap(["post_tweet", "retweet", "comment", "ls"]) == {
        "comment": "BFCL multi-turn TwitterAPI", "post_tweet": "BFCL multi-turn TwitterAPI", "retweet": "BFCL multi-turn TwitterAPI"}
