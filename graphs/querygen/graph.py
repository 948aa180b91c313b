"""The QueryGen graph, ``make_graph`` (compiled without a checkpointer: ``langgraph dev`` injects
one). ``make_chain_graph`` (one chain, a node per step) lives in ``chain``."""
from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from envfactory.graphs.querygen.context import QueryGenContextForm
from envfactory.graphs.querygen.nodes import fan_out, next_wave, process_chain, sample_chains, summarize
from envfactory.graphs.querygen.state import QueryGenInput, QueryGenState


def make_graph():
    """The QueryGen graph (compiled without a checkpointer: ``langgraph dev`` injects one)."""
    g = StateGraph(QueryGenState, input_schema=QueryGenInput, context_schema=QueryGenContextForm)
    g.add_node("sample_chains", sample_chains)
    g.add_node("process_chain", process_chain)
    g.add_node("next_wave", next_wave)
    g.add_node("summarize", summarize)
    g.add_edge(START, "sample_chains")
    g.add_conditional_edges("sample_chains", fan_out, ["process_chain", "summarize"])
    g.add_edge("process_chain", "next_wave")  # a wave's slots done: send the next wave, or summarize
    g.add_conditional_edges("next_wave", fan_out, ["process_chain", "summarize"])
    g.add_edge("summarize", END)
    return g.compile(name="QueryGen")
