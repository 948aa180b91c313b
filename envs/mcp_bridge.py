"""Deprecated path, kept for one release because the 0.1 README and notebook used it: import from
``envfactory.envs.mcp`` instead."""
import warnings

from envfactory.envs.mcp import EpisodeControl, build_server, episode_tools, in_memory_session  # noqa: F401

warnings.warn("envfactory.envs.mcp_bridge moved to envfactory.envs.mcp; the old path goes in the next release",
              DeprecationWarning, stacklevel=2)
