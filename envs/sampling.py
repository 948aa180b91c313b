"""Deprecated path, kept for one release because the 0.1 README and notebook used it: import from
``envfactory.envs.chains`` instead."""
import warnings

from envfactory.envs.chains import ChainSampler, Discarded, GoldTrajectory, SamplerConfig, chain_statistics, sample_many  # noqa: F401

warnings.warn("envfactory.envs.sampling moved to envfactory.envs.chains; the old path goes in the next release",
              DeprecationWarning, stacklevel=2)
