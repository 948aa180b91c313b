"""Every bundled environment passes its own tests with full coverage, deterministically, and
meets the catalog's quality bar."""
from __future__ import annotations

import pytest

from envfactory.envs import Environment, catalog_names
from envfactory.envs.quality import quality_problems
from envfactory.envs.testcases import run_suite

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
