"""The tool dependency graph of one or more environments (networkx).

An edge ``A -> B`` says an output field of tool A can supply parameter ``p`` of tool B. Edges are
proposed by typed matching (same name and compatible type, or a foreign key of the environment's
schema that names the producer's field), optionally by an LLM or embeddings, and every edge records
its source. Edges are then *confirmed by execution*: a real output of A, fed into B on an episode,
must make B succeed (``confirm.py``; this module only proposes). Sampling uses confirmed edges
unless told otherwise.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

import networkx as nx

from envfactory.envs.runtime.environment import Environment, EnvironmentBase

ParamOrigin = Literal["user", "tool"]
_ID_NAME = re.compile(r"(^id$|_id$|_ids$|[a-z0-9]Ids?$|[a-z0-9]ID$)")  # camelCase too: imported tools keep it


@dataclass(frozen=True)
class OutputField:
    path: str            # "loan_id", "books[].book_id"
    name: str            # the last segment, "book_id"
    type: str | None     # JSON Schema type, when declared


def output_fields(schema: dict[str, Any], prefix: str = "", depth: int = 0) -> list[OutputField]:
    """Flatten an output schema's properties, through objects and arrays of objects (two levels)."""
    out: list[OutputField] = []
    if not prefix and _type_of(schema) == "array" and isinstance(schema.get("items"), dict):
        return output_fields(schema["items"], "[].", depth + 1)  # a list of records (imported tools return those)
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        typ = _type_of(sub)
        out.append(OutputField(path, name, typ))
        if depth < 2 and typ == "object":
            out += output_fields(sub, f"{path}.", depth + 1)
        if depth < 2 and typ == "array" and isinstance(sub.get("items"), dict):
            out += output_fields(sub["items"], f"{path}[].", depth + 1)
    return out


def _type_of(schema: dict[str, Any]) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t is None and "enum" in schema:
        values = schema["enum"]
        t = "string" if all(isinstance(v, str) for v in values) else None
    return t


def _compatible(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return True  # undeclared: let execution decide
    numeric = {"integer", "number"}
    return a == b or (a in numeric and b in numeric)


def classify_parameter(name: str, schema: dict[str, Any]) -> tuple[ParamOrigin, str]:
    """Could a user state this value (a city, a date, a title), or must it come from a tool (an internal id)?

    Deterministic rules; returns the origin and the rule that decided it.
    """
    if "enum" in schema:
        return "user", "enumerated values are stated by users"
    if _ID_NAME.search(name):
        return "tool", "internal identifiers come from tool outputs"
    return "user", "descriptive values (names, dates, amounts, text) are stated by users"


@dataclass
class ToolGraph:
    graph: nx.MultiDiGraph
    envs: dict[str, Environment] = field(default_factory=dict)

    # -- queries
    def param_info(self, tool: str) -> dict[str, dict[str, Any]]:
        return self.graph.nodes[tool]["params"]

    def edges(self, confirmed: bool | None = None) -> list[tuple[str, str, dict]]:
        return [(u, v, d) for u, v, d in self.graph.edges(data=True) if confirmed is None or d["confirmed"] == confirmed]

    def depth(self, confirmed_only: bool = True) -> int:
        """Longest simple dependency chain (in calls) over tool nodes, ignoring self-loops."""
        g = nx.DiGraph()
        g.add_nodes_from(self.graph.nodes)
        g.add_edges_from((u, v) for u, v, d in self.edges(True if confirmed_only else None) if u != v)
        if nx.is_directed_acyclic_graph(g):
            return nx.dag_longest_path_length(g) + 1 if g.number_of_nodes() else 0
        # cycles (A gives B an id and B gives A one): the longest simple path is NP-hard in general, so
        # search simple paths from every node by depth-first search, bounded at 9 calls
        limit = 9
        adjacency = {n: list(g.successors(n)) for n in g.nodes}
        best = 1

        def extend(node: str, seen: set[str]) -> None:
            nonlocal best
            best = max(best, len(seen))
            if best >= limit or len(seen) >= limit:
                return
            for nxt in adjacency[node]:
                if nxt not in seen:
                    seen.add(nxt)
                    extend(nxt, seen)
                    seen.discard(nxt)

        for source in g.nodes:
            extend(source, {source})
        return best

    def summary(self) -> dict[str, Any]:
        tools = list(self.graph.nodes)
        confirmed = self.edges(True)
        by_source: dict[str, int] = {}
        for _, _, d in self.graph.edges(data=True):
            by_source[d["source"]] = by_source.get(d["source"], 0) + 1
        params = [(t, p, info) for t in tools for p, info in self.param_info(t).items()]
        return {"environments": sorted(self.envs), "tools": len(tools), "edges": self.graph.number_of_edges(),
                "confirmed_edges": len(confirmed), "unconfirmed_edges": self.graph.number_of_edges() - len(confirmed),
                "edges_by_source": by_source, "depth_confirmed": self.depth(True),
                "parameters": len(params), "user_parameters": sum(i["origin"] == "user" for _, _, i in params),
                "tool_parameters": sum(i["origin"] == "tool" for _, _, i in params)}

    # -- export
    def to_json(self) -> dict[str, Any]:
        data = nx.node_link_data(self.graph, edges="edges")
        return {"summary": self.summary(), "graph": data}

    def write(self, out_dir: Path, stem: str) -> dict[str, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"json": out_dir / f"{stem}.graph.json", "graphml": out_dir / f"{stem}.graphml"}
        paths["json"].write_text(json.dumps(self.to_json(), indent=1, default=str))
        flat = nx.MultiDiGraph()
        for n, d in self.graph.nodes(data=True):
            flat.add_node(n, env=d["env"], read_only=d["read_only"], params=json.dumps(d["params"]))
        for u, v, d in self.graph.edges(data=True):
            flat.add_edge(u, v, **{k: (json.dumps(x) if isinstance(x, (dict, list)) else x) for k, x in d.items()})
        nx.write_graphml(flat, paths["graphml"])
        return paths

    def draw(self, path: Path) -> Path:
        """A layered picture: producers left of consumers, writes in orange, unconfirmed edges dashed."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        g = nx.DiGraph()
        g.add_nodes_from(self.graph.nodes(data=True))
        for u, v, d in self.graph.edges(data=True):
            if u != v:
                prev = g.get_edge_data(u, v)
                g.add_edge(u, v, confirmed=d["confirmed"] or bool(prev and prev["confirmed"]))
        layer = _layers(g)
        nx.set_node_attributes(g, layer, "layer")
        pos = nx.multipartite_layout(g, subset_key="layer", align="vertical", scale=2.0)
        width = 3 + 3 * (max(layer.values(), default=0) + 1)
        height = 2 + 0.55 * max(list(layer.values()).count(k) for k in set(layer.values())) if layer else 4
        fig, ax = plt.subplots(figsize=(width, max(height, 4)))
        colors = ["#9ecae1" if g.nodes[n]["read_only"] else "#fdae6b" for n in g.nodes]
        nx.draw_networkx_nodes(g, pos, node_color=colors, node_size=900, ax=ax, edgecolors="#444")
        nx.draw_networkx_labels(g, pos, labels={n: n.split(".", 1)[-1] for n in g.nodes}, font_size=8, ax=ax)
        solid = [(u, v) for u, v, d in g.edges(data=True) if d["confirmed"]]
        dashed = [(u, v) for u, v, d in g.edges(data=True) if not d["confirmed"]]
        nx.draw_networkx_edges(g, pos, edgelist=solid, ax=ax, arrows=True, arrowsize=12, node_size=900, edge_color="#333")
        nx.draw_networkx_edges(g, pos, edgelist=dashed, ax=ax, arrows=True, style="dashed", node_size=900, edge_color="#aaa")
        ax.set_title(f"tool dependency graph: {', '.join(sorted(self.envs))}  (blue: read, orange: write, dashed: unconfirmed)", fontsize=9)
        ax.axis("off")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


def _layers(g: nx.DiGraph) -> dict[str, int]:
    """Layer = calls needed before a tool: BFS distance over confirmed edges from the tools that
    need no other tool (read-only tools when every tool has a producer)."""
    confirmed = nx.DiGraph([(u, v) for u, v, d in g.edges(data=True) if d["confirmed"] and u != v])
    confirmed.add_nodes_from(g.nodes)
    roots = [n for n in confirmed if confirmed.in_degree(n) == 0] or [n for n in g if g.nodes[n]["read_only"]] or list(g)
    dist = nx.multi_source_dijkstra_path_length(confirmed, roots)
    return {n: int(dist.get(n, 0)) for n in g.nodes}


def _foreign_key_aliases(env: Environment) -> dict[str, set[str]]:
    """Parameter name -> producer field names implied by the schema's foreign keys
    (``assignee_id REFERENCES users(user_id)`` lets ``user_id`` fill ``assignee_id``)."""
    aliases: dict[str, set[str]] = {}
    if not isinstance(env, Environment):  # an imported class: its JSON state declares no foreign keys
        return aliases
    conn = env._scratch(env.initial_state)
    try:
        for table in env.tables:
            for row in conn.execute(f'PRAGMA foreign_key_list("{table}")'):
                parent, col, pcol = row[2], row[3], row[4]
                pcol = pcol or env.primary_keys.get(parent)
                if col and pcol and col != pcol:
                    aliases.setdefault(col, set()).add(pcol)
    finally:
        conn.close()
    return aliases


def node_id(env: Environment, tool: str, multi: bool) -> str:
    return f"{env.name}.{tool}" if multi else tool


def propose_tool_graph(envs: Environment | Iterable[Environment],
                       proposals: Iterable[dict[str, Any]] = ()) -> ToolGraph:
    """The graph of proposed edges: typed matching, plus external proposals (LLM/embeddings).
    Nothing is confirmed yet (``envfactory.envs.chains.confirm.build_tool_graph`` does that).

    ``proposals`` items: ``{"producer", "consumer", "param", "field", "source"}`` with tool node ids.
    """
    envs = [envs] if isinstance(envs, EnvironmentBase) else list(envs)
    multi = len(envs) > 1
    g = nx.MultiDiGraph()
    by_env = {e.name: e for e in envs}
    for env in envs:
        for spec in env.tool_specs:
            required = set(spec.input_schema.get("required", []))
            params = {}
            for pname, pschema in spec.input_schema.get("properties", {}).items():
                origin, rule = classify_parameter(pname, pschema)
                params[pname] = {"type": _type_of(pschema), "required": pname in required, "origin": origin,
                                 "rule": rule, "description": pschema.get("description", "")}
            g.add_node(node_id(env, spec.name, multi), env=env.name, tool=spec.name, read_only=spec.read_only,
                       params=params, outputs=[f.path for f in output_fields(spec.output_schema)])
    for consumer_env in envs:
        aliases = _foreign_key_aliases(consumer_env)
        for spec in consumer_env.tool_specs:
            v = node_id(consumer_env, spec.name, multi)
            for pname, info in g.nodes[v]["params"].items():
                if info["origin"] != "tool" and isinstance(consumer_env, Environment):
                    continue  # values a user states need no producer (imported classes rarely name ids *_id:
                    # there an output field of the same name may fill any parameter)
                for producer_env in envs:
                    for pspec in producer_env.tool_specs:
                        u = node_id(producer_env, pspec.name, multi)
                        for f in output_fields(pspec.output_schema):
                            if not _compatible(f.type, info["type"]) or f.type in ("object", "array"):
                                continue
                            if f.name == pname:
                                source = "name_match"
                            elif f.name in aliases.get(pname, ()) and producer_env is consumer_env:
                                source = "foreign_key"
                            else:
                                continue
                            g.add_edge(u, v, param=pname, field=f.path, source=source, confirmed=False, evidence=None)
    for p in proposals:
        g.add_edge(p["producer"], p["consumer"], param=p["param"], field=p["field"], source=p.get("source", "llm"),
                   confirmed=False, evidence=None)
    return ToolGraph(g, by_env)
