"""Chain seeds for fixtures written against specific tasks: the first ``n`` seeds from ``start`` on
whose chains the sampler keeps (what a run with ``n`` and ``seed`` sampled before runs used slots)."""
from __future__ import annotations

from envfactory.envs.chains.sampling import GoldTrajectory
from envfactory.graphs.querygen.resources import _sampler


def kept_seeds(env: str, start: int, n: int) -> list[int]:
    sampler, seeds, s = _sampler((env,), 1), [], start
    while len(seeds) < n and s < start + 8 * n:
        if isinstance(sampler.sample(s), GoldTrajectory):
            seeds.append(s)
        s += 1
    return seeds
