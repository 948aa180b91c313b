"""One chain's five agent steps as a graph, one node per step (``make_chain_graph``).

Registered in ``langgraph.json`` as ``querygen_chain`` (input ``{"chain": <sampled chain>}``), and
compiled once here as ``CHAIN_GRAPH``, which the run graph's ``process_chain`` node names: Studio
draws the five steps inside ``process_chain``, and with ``QueryGenContext.step_graph`` set each chain
runs through it as a subgraph (its steps stream as nodes of their own).
"""
from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from envfactory.graphs.querygen.context import QueryGenContextForm
from envfactory.graphs.querygen.state import ChainState
from envfactory.graphs.querygen.steps import calibrate, generate_queries, roll_out, split_turns, verify


def make_chain_graph():
    """One chain, one node per step (for Studio and step-by-step inspection; ``make_graph`` runs the
    same steps inside its ``process_chain`` node)."""
    g = StateGraph(ChainState, context_schema=QueryGenContextForm)
    g.add_node("split_turns", split_turns)
    g.add_node("generate_queries", generate_queries)
    g.add_node("calibrate", calibrate)
    g.add_node("roll_out", roll_out)
    g.add_node("verify", verify)
    g.add_edge(START, "split_turns")
    g.add_edge("split_turns", "generate_queries")
    g.add_edge("generate_queries", "calibrate")
    g.add_edge("calibrate", "roll_out")
    g.add_edge("roll_out", "verify")
    g.add_edge("verify", END)
    return g.compile(name="QueryGen chain")


CHAIN_GRAPH = make_chain_graph()
