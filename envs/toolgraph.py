"""Deprecated path, kept for one release because the 0.1 README and notebook used it: import from
``envfactory.envs.chains`` instead."""
import warnings

from envfactory.envs.chains import build_tool_graph  # noqa: F401

warnings.warn("envfactory.envs.toolgraph moved to envfactory.envs.chains; the old path goes in the next release",
              DeprecationWarning, stacklevel=2)
