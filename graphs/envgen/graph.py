"""The EnvGen graph, compiled without a checkpointer (``langgraph dev`` injects one; the CLI passes
a SQLite saver)."""
from __future__ import annotations



from langgraph.graph import END, START, StateGraph



from envfactory.graphs.envgen.context import EnvGenContextForm
from envfactory.graphs.envgen.nodes import (accept, after_repair, after_review, code, design, reject, repair, research,
                                            review, revise_tests, route, test, write_tests)
from envfactory.graphs.envgen.state import EnvGenInput, EnvGenState

def _then(next_node: str):
    """A router that goes on to ``next_node`` unless the step failed for good."""
    def go_on(state: EnvGenState) -> str:
        return "reject" if state.get("failure") else next_node
    go_on.__name__ = f"to_{next_node}"
    return go_on

def make_graph():
    """The EnvGen graph (compiled without a checkpointer: ``langgraph dev`` injects one)."""
    g = StateGraph(EnvGenState, input_schema=EnvGenInput, context_schema=EnvGenContextForm)
    g.add_node("research", research)
    g.add_node("design", design)
    g.add_node("code", code)
    g.add_node("write_tests", write_tests)
    g.add_node("test", test)
    g.add_node("repair", repair)
    g.add_node("revise_tests", revise_tests)
    g.add_node("review", review)
    g.add_node("accept", accept)
    g.add_node("reject", reject)
    g.add_edge(START, "research")
    g.add_conditional_edges("research", _then("design"), ["design", "reject"])
    g.add_conditional_edges("design", _then("code"), ["code", "reject"])
    g.add_conditional_edges("code", _then("write_tests"), ["write_tests", "reject"])
    g.add_conditional_edges("write_tests", _then("test"), ["test", "reject"])
    g.add_conditional_edges("test", route, ["accept", "review", "repair", "reject"])
    g.add_conditional_edges("review", after_review, ["accept", "repair", "reject"])
    g.add_conditional_edges("repair", after_repair, ["revise_tests", "test"])
    g.add_edge("revise_tests", "test")
    g.add_edge("accept", END)
    g.add_edge("reject", END)
    return g.compile(name="EnvGen")
