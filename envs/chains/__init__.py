"""Tool chains: the tool dependency graph and the sampling of executed gold trajectories.

- ``toolgraph``: proposed edges (typed name matching, foreign keys, external proposals).
- ``sampling``: chains planned backwards from a target, grounded, executed on a fresh episode.
- ``grounding``: argument values drawn from an episode's data.
- ``selectors``: how a user singles out one listed element (a value only it has, two fields, an order).
- ``confirm``: ``build_tool_graph`` (propose, then confirm edges by executing chains).
- ``graph_cache``: confirmed edges kept on disk.

May import ``envfactory.envs.runtime``. Inside: ``toolgraph``, ``selectors`` <- ``sampling`` <- ``confirm``.
"""
from envfactory.envs.chains.confirm import build_tool_graph
from envfactory.envs.chains.sampling import (ChainSampler, Discarded, GoldTrajectory, SamplerConfig, chain_statistics,
                                             sample_many)
from envfactory.envs.chains.toolgraph import ToolGraph

__all__ = ["ChainSampler", "Discarded", "GoldTrajectory", "SamplerConfig", "ToolGraph", "build_tool_graph",
           "chain_statistics", "sample_many"]
