"""Confirming tool-graph edges by execution, and ``build_tool_graph`` (propose, then confirm).

An edge A -> B(p) is confirmed when a chain that makes a real call of A feeds A's output into B's
``p`` on a fresh episode and B succeeds. Confirmation samples chains, so it sits above both the
tool graph and the sampler; confirmed edges are kept on disk (``graph_cache``).
"""
from __future__ import annotations

import random
from typing import Any, Iterable

from envfactory.envs.chains import graph_cache
from envfactory.envs.chains.sampling import Binding, ChainSampler, GoldTrajectory, SamplerConfig
from envfactory.envs.chains.toolgraph import ToolGraph, propose_tool_graph
from envfactory.envs.runtime.environment import Environment, EnvironmentBase

# How edges are confirmed (``confirm_edges``'s defaults; part of the tool-graph cache's key)
CONFIRM_SETTINGS = {"attempts": 6, "optional_attempts": 3, "optional_rate": 0.5}


def build_tool_graph(envs: Environment | Iterable[Environment], confirm: bool = True,
                     proposals: Iterable[dict[str, Any]] = ()) -> ToolGraph:
    """Build the graph by typed matching, add external proposals (LLM/embeddings), then confirm
    edges by execution (read from the on-disk cache when an earlier process confirmed them).

    ``proposals`` items: ``{"producer", "consumer", "param", "field", "source"}`` with tool node ids.
    """
    envs = [envs] if isinstance(envs, EnvironmentBase) else list(envs)
    tg = propose_tool_graph(envs, proposals)
    if confirm:
        edges = list(tg.graph.edges(data=True))
        key = graph_cache.cache_key(envs, edges, CONFIRM_SETTINGS)
        if not graph_cache.load(key, edges):  # confirmed by an earlier process: same packages, edges and code
            confirm_edges(tg, **CONFIRM_SETTINGS)
            graph_cache.save(key, edges)
    return tg


def confirm_edges(tg: ToolGraph, attempts: int = CONFIRM_SETTINGS["attempts"],
                  optional_attempts: int = CONFIRM_SETTINGS["optional_attempts"],
                  optional_rate: float = CONFIRM_SETTINGS["optional_rate"]) -> None:
    """Confirm each edge A -> B(p) by execution: plan a chain that makes a real call of A (its own
    inputs produced the same way), feed A's output into B's ``p``, and run it on a fresh episode.
    When B succeeds, the edge and every other edge the chain relied on are confirmed.

    The first ``attempts`` tries send required arguments only (the plainest call). Some tools need
    an optional value to do anything (an edit with only the id changes nothing and is refused), so
    an edge still unconfirmed gets ``optional_attempts`` more tries with optional arguments grounded
    at ``optional_rate``."""
    def make_sampler(rate: float) -> ChainSampler:
        # Each attempt is one plain execution (no redraws of failed calls): the graph a catalog gets
        # stays what it always was, and the attempts above already vary the drawn values.
        return ChainSampler(tg, SamplerConfig(confirmed_only=False, optional_rate=rate, max_length=10, max_depth=5,
                                              call_retries=0, backtracks=0, require_selectors=False))

    plain, with_optionals = make_sampler(0.0), make_sampler(optional_rate)
    index = {(u, v, d["param"], d["field"]): d for u, v, d in tg.graph.edges(data=True)}
    for (u, v, param, fld), d in index.items():
        if d["confirmed"]:
            continue
        pu, pv = tg.graph.nodes[u], tg.graph.nodes[v]
        if pu["env"] != pv["env"]:
            d["evidence"] = "cross-environment edges stay proposals: ids do not travel between services"
            continue
        for attempt in range(attempts + optional_attempts):
            sampler = plain if attempt < attempts else with_optionals
            rng = random.Random(f"confirm:{u}:{v}:{param}:{fld}:{attempt}")
            calls: list = []
            producer = sampler._plan_node(u, rng, calls, depth=1, visiting={v})
            if producer is None:
                d["evidence"] = f"could not plan a call of {pu['tool']}"
                break
            sampler._plan_node(v, rng, calls, depth=1, visiting=set(),
                               forced={param: Binding(source="call", call=producer, field=fld, edge_source=d["source"])})
            out = sampler.execute(calls, [v], [pu["env"]], seed=attempt, chain_id=f"confirm-{u}-{v}-{param}")
            if isinstance(out, GoldTrajectory):
                for i, call in enumerate(out.calls):
                    for pname, b in call.bindings.items():
                        if b.source == "call":
                            key = (calls[b.call].node, calls[i].node, pname, b.field)
                            if key in index and not index[key]["confirmed"]:
                                index[key]["confirmed"] = True
                                index[key]["evidence"] = {"chain": [c.tool for c in out.calls],
                                                          "arguments": [c.arguments for c in out.calls]}
                break
            d["evidence"] = out.reason
