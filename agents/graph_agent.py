"""Graph agent: optional model refinements of the tool dependency graph.

Prompts ``graph_agent/propose_edges`` and ``graph_agent/classify_params``; it runs with whatever
chat model the caller passes (the ``search`` role's model is a sensible default). Proposed edges enter the graph with source ``llm`` and count only once execution
confirms them; parameter classes a model changes record the rule ``llm``. Without a model the graph
is built from typed matching and rules alone.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from envfactory.envs.runtime.environment import Environment
from envfactory.envs.chains.confirm import build_tool_graph
from envfactory.envs.chains.toolgraph import ToolGraph, output_fields
from envfactory.prompts.registry import PromptRef, default_registry

from envfactory.agents.structured import invoke_structured


class EdgeProposal(BaseModel):
    producer: str
    field: str
    consumer: str
    param: str
    why: str = ""


class EdgeProposals(BaseModel):
    edges: list[EdgeProposal]


class ParamClass(BaseModel):
    tool: str
    param: str
    origin: Literal["user", "tool"]


class ParamClasses(BaseModel):
    params: list[ParamClass]


def _tool_summaries(tg: ToolGraph) -> list[dict[str, Any]]:
    out = []
    for node, data in tg.graph.nodes(data=True):
        env = tg.envs[data["env"]]
        spec = env.manifest.tool(data["tool"])
        out.append({"name": node, "description": spec.description,
                    "parameters": [{"name": p, "type": i["type"], "description": i["description"]} for p, i in data["params"].items()],
                    "output_fields": [f.path for f in output_fields(spec.output_schema)]})
    return out


def propose_edges(tg: ToolGraph, model, versions: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], list[str], PromptRef]:
    """Model-proposed edges, checked against the real tool, field and parameter names.
    Returns (valid proposals for ``build_tool_graph``, reasons for the rejected ones, prompt used)."""
    known = [f"{u}.{d['field']} -> {v}.{d['param']}" for u, v, d in tg.graph.edges(data=True)]
    rendered = default_registry().render("graph_agent/propose_edges", (versions or {}).get("graph_agent/propose_edges", "latest"),
                                         tools=_tool_summaries(tg), known=known)
    proposals = invoke_structured(model, rendered.messages(), EdgeProposals).value.edges
    valid, rejected = [], []
    existing = {(u, v, d["param"], d["field"]) for u, v, d in tg.graph.edges(data=True)}
    for p in proposals:
        nodes = tg.graph.nodes
        if (p.producer, p.consumer, p.param, p.field) in existing:
            rejected.append(f"{p.producer}.{p.field} -> {p.consumer}.{p.param}: already known")
        elif p.producer not in nodes or p.consumer not in nodes:
            rejected.append(f"{p.producer} -> {p.consumer}: unknown tool")
        elif p.param not in nodes[p.consumer]["params"]:
            rejected.append(f"{p.consumer} has no parameter {p.param!r}")
        elif p.field not in nodes[p.producer]["outputs"]:
            rejected.append(f"{p.producer} outputs no field {p.field!r}")
        else:
            valid.append({"producer": p.producer, "consumer": p.consumer, "param": p.param, "field": p.field, "source": "llm"})
    return valid, rejected, rendered.ref


def refine_classes(tg: ToolGraph, model, versions: dict[str, str] | None = None) -> list[str]:
    """Let a model revise the user/tool class of parameters; returns what changed."""
    params = [{"tool": n, "param": p, "type": i["type"], "description": i["description"], "guess": i["origin"]}
              for n, d in tg.graph.nodes(data=True) for p, i in d["params"].items()]
    rendered = default_registry().render("graph_agent/classify_params", (versions or {}).get("graph_agent/classify_params", "latest"),
                                         params=params)
    changed = []
    for c in invoke_structured(model, rendered.messages(), ParamClasses).value.params:
        info = tg.graph.nodes[c.tool]["params"].get(c.param) if c.tool in tg.graph.nodes else None
        if info is not None and info["origin"] != c.origin:
            info["origin"], info["rule"] = c.origin, "llm"
            changed.append(f"{c.tool}.{c.param}: {c.origin}")
    return changed


def build_with_model(envs: Environment | list[Environment], model) -> tuple[ToolGraph, dict[str, Any]]:
    """Typed matching, then model proposals; every proposal must pass execution to be confirmed."""
    base = build_tool_graph(envs, confirm=False)
    proposals, rejected, ref = propose_edges(base, model)
    graph = build_tool_graph(envs, confirm=True, proposals=proposals)
    return graph, {"proposed": len(proposals), "rejected": rejected, "prompt": ref.model_dump()}
