"""The tool dependency graph as a readable SVG: a layered drawing (producers left of consumers)
with parameter names on the edges, confirmed edges solid, proposed ones dashed, reads and writes in
two colours; readable at 30+ tools.

Layout is the classic layered (Sugiyama) recipe, small enough to keep here: break cycles, assign
layers by longest path, put dummy points on edges that skip layers, order each layer by barycentre
sweeps to cut crossings, then place boxes sized to their labels. Plain SVG, no script needed to read
it; ``data-*`` attributes let a page highlight a tool's edges.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import networkx as nx

FONT_PX = 12
CHAR_PX = 7.0          # average advance of the sans-serif font at FONT_PX (labels are measured with it)
NODE_H = 28
ROW_GAP = 22           # vertical gap between boxes of one layer
DUMMY_H = 9            # the room an edge passing through a layer takes in it
LAYER_GAP = 120        # horizontal gap between layers (room for an edge label)
MARGIN = 24
SWEEPS = 12


@dataclass
class _Edge:
    u: str
    v: str
    params: list[str] = field(default_factory=list)
    confirmed: bool = False
    sources: set[str] = field(default_factory=set)


def _merged_edges(graph: nx.MultiDiGraph) -> dict[tuple[str, str], _Edge]:
    """One drawn edge per (producer, consumer): its parameter names, confirmed if any one is."""
    edges: dict[tuple[str, str], _Edge] = {}
    for u, v, d in graph.edges(data=True):
        e = edges.setdefault((u, v), _Edge(u, v))
        source_field = str(d.get("field") or d["param"]).split(".")[-1].replace("[]", "")
        label = d["param"] if source_field == d["param"] else f"{source_field}→{d['param']}"
        if label not in e.params:
            e.params.append(label)
        e.confirmed = e.confirmed or bool(d.get("confirmed"))
        e.sources.add(str(d.get("source", "")))
    return edges


def _acyclic(nodes: list[str], edges: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The edges to reverse so the rest is acyclic: back edges of a DFS in name order (stable)."""
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}
    for root in sorted(nodes, key=lambda n: (g.in_degree(n), n)):
        if root in state:
            continue
        stack = [(root, iter(sorted(g.successors(root))))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(g.successors(nxt)))))
    return back


def layout(graph: nx.MultiDiGraph) -> dict[str, Any]:
    """Positions of boxes and edge polylines (SVG coordinates) for the tool graph ``graph``."""
    nodes = sorted(graph.nodes)
    merged = _merged_edges(graph)
    plain = [(u, v) for (u, v) in merged if u != v]
    back = _acyclic(nodes, plain)
    forward = [(v, u) if (u, v) in back else (u, v) for (u, v) in plain]
    dag = nx.DiGraph()
    dag.add_nodes_from(nodes)
    dag.add_edges_from(forward)
    layer = {n: 0 for n in nodes}
    for n in nx.topological_sort(dag):  # longest path: a tool sits right of everything it needs
        for p in dag.predecessors(n):
            layer[n] = max(layer[n], layer[p] + 1)
    # dummy points on edges that skip layers, so they are ordered (and routed) like boxes
    chains: dict[tuple[str, str], list[str]] = {}
    order_graph = nx.DiGraph()
    order_graph.add_nodes_from(nodes)
    slot_layer = dict(layer)
    for (a, b) in forward:
        path = [a]
        for k in range(layer[a] + 1, layer[b]):
            dummy = f"\0{a}\0{b}\0{k}"
            slot_layer[dummy] = k
            path.append(dummy)
        path.append(b)
        for x, y in zip(path, path[1:]):
            order_graph.add_edge(x, y)
        chains[(a, b)] = path
    layers: dict[int, list[str]] = {}
    for n in sorted(slot_layer, key=lambda n: (slot_layer[n], n.startswith("\0"), n)):
        layers.setdefault(slot_layer[n], []).append(n)
    _order_by_barycentre(layers, order_graph)
    # place: columns as wide as their widest label, boxes stacked and centred
    width = {n: (max(60.0, CHAR_PX * len(n) + 20) if not n.startswith("\0") else 0.0) for n in slot_layer}
    col_w = {k: max([width[n] for n in members] + [0.0]) for k, members in layers.items()}
    x_of, x = {}, float(MARGIN)
    for k in sorted(layers):
        x_of[k] = x
        x += col_w[k] + LAYER_GAP
    def room(n: str) -> float:
        return DUMMY_H if n.startswith("\0") else NODE_H + ROW_GAP

    heights = {k: sum(room(n) for n in m) for k, m in layers.items()}
    total_h = max(heights.values(), default=NODE_H)
    pos: dict[str, tuple[float, float]] = {}
    for k, members in layers.items():
        y = MARGIN + (total_h - heights[k]) / 2
        for n in members:
            top = y if not n.startswith("\0") else y - NODE_H / 2 + DUMMY_H / 2
            pos[n] = (x_of[k] + (col_w[k] - width[n]) / 2, top)
            y += room(n)
    boxes = {n: {"x": pos[n][0], "y": pos[n][1], "w": width[n], "h": NODE_H, "label": n,
                 "read_only": bool(graph.nodes[n].get("read_only")), "env": graph.nodes[n].get("env", ""),
                 "params": graph.nodes[n].get("params", {})} for n in nodes}
    drawn = []
    for (u, v), e in sorted(merged.items()):
        if u == v:
            b = boxes[u]
            drawn.append({"edge": e, "kind": "loop", "points": [(b["x"] + b["w"] * 0.35, b["y"]), (b["x"] + b["w"] * 0.65, b["y"])]})
            continue
        reversed_ = (u, v) in back
        path = chains[(v, u)] if reversed_ else chains[(u, v)]
        pts = []
        for i, n in enumerate(path):
            px, py = pos[n]
            if n.startswith("\0"):
                pts.append((px, py + NODE_H / 2))
            elif i == 0:
                pts.append((px + width[n], py + NODE_H / 2))
            else:
                pts.append((px, py + NODE_H / 2))
        if reversed_:
            pts = pts[::-1]
        drawn.append({"edge": e, "kind": "back" if reversed_ else "forward", "points": pts})
    return {"boxes": boxes, "edges": drawn, "width": x - LAYER_GAP + MARGIN,
            "height": total_h + 2 * MARGIN + 30}


def _order_by_barycentre(layers: dict[int, list[str]], g: nx.DiGraph) -> None:
    """Reorder each layer by the mean position of its neighbours in the previous (then next) layer."""
    def sweep(keys: list[int], neighbours) -> None:
        for k in keys:
            prev = {n: i for i, n in enumerate(layers.get(k - 1 if neighbours is g.predecessors else k + 1, []))}
            def bary(n: str, i: int) -> float:
                idx = [prev[m] for m in neighbours(n) if m in prev]
                return sum(idx) / len(idx) if idx else float(i)
            layers[k] = [n for _, _, n in sorted((bary(n, i), i, n) for i, n in enumerate(layers[k]))]

    keys = sorted(layers)
    for _ in range(SWEEPS):
        sweep(keys[1:], g.predecessors)
        sweep(keys[-2::-1], g.successors)


def _path_d(points: list[tuple[float, float]], kind: str) -> str:
    if kind == "loop":
        (x1, y1), (x2, y2) = points
        return f"M{x1:.1f},{y1:.1f} C{x1 - 10:.1f},{y1 - 34:.1f} {x2 + 10:.1f},{y2 - 34:.1f} {x2:.1f},{y2:.1f}"
    if kind == "back" and len(points) == 2:  # same or earlier layer: bow below
        (x1, y1), (x2, y2) = points
        drop = 40 + abs(x1 - x2) * 0.15
        return f"M{x1:.1f},{y1:.1f} C{x1 + 60:.1f},{y1 + drop:.1f} {x2 - 60:.1f},{y2 + drop:.1f} {x2:.1f},{y2:.1f}"
    d = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
    for (x1, y1), (x2, y2) in zip(points, points[1:]):
        mid = (x1 + x2) / 2
        d += f" C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    return d


def _label_at(points: list[tuple[float, float]], kind: str) -> tuple[float, float]:
    if kind == "loop":
        (x1, y1), (x2, _) = points
        return (x1 + x2) / 2, y1 - 30
    if kind == "back" and len(points) == 2:
        (x1, y1), (x2, y2) = points
        return (x1 + x2) / 2, max(y1, y2) + 34
    mid = (len(points) - 1) // 2  # the middle segment: away from the crowd at either end
    (x1, y1), (x2, y2) = points[mid], points[mid + 1]
    return (x1 + x2) / 2, (y1 + y2) / 2 - 4


def tool_graph_svg(graph: nx.MultiDiGraph, title: str = "") -> str:
    """The drawing as a standalone SVG document (inline it in HTML, or write it to a .svg file)."""
    lay = layout(graph)
    w, h = max(lay["width"], 320), max(lay["height"], 120)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="toolgraph" viewBox="0 0 {w:.0f} {h:.0f}" '
           f'width="{w:.0f}" height="{h:.0f}" role="img" aria-label="{escape(title or "tool dependency graph")}" '
           f'font-family="sans-serif" font-size="{FONT_PX}">',
           "<defs>"
           '<marker id="arrow-ok" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" fill="#334"/></marker>'
           '<marker id="arrow-proposed" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" fill="#999"/></marker>'
           "</defs>",
           '<g class="edges">']
    for item in lay["edges"]:
        e: _Edge = item["edge"]
        cls = "edge confirmed" if e.confirmed else "edge proposed"
        label = ", ".join(e.params)
        tip = f"{e.u} → {e.v}: {label} ({'confirmed by execution' if e.confirmed else 'proposed'}; {', '.join(sorted(e.sources))})"
        lx, ly = _label_at(item["points"], item["kind"])
        dash = "" if e.confirmed else ' stroke-dasharray="5 4"'
        out.append(f'<g class="{cls}" data-from="{escape(e.u)}" data-to="{escape(e.v)}"><title>{escape(tip)}</title>'
                   f'<path d="{_path_d(item["points"], item["kind"])}" fill="none" '
                   f'stroke="{"#334" if e.confirmed else "#999"}" stroke-width="{1.4 if e.confirmed else 1.1}"'
                   f'{dash} '
                   f'marker-end="url(#{"arrow-ok" if e.confirmed else "arrow-proposed"})"/>'
                   f'<text class="edge-label" x="{lx:.1f}" y="{ly:.1f}" text-anchor="middle" font-size="{FONT_PX - 2}" '
                   f'fill="{"#223" if e.confirmed else "#777"}" stroke="#fff" stroke-width="3" paint-order="stroke">'
                   f'{escape(label)}</text></g>')
    out.append("</g><g class=\"nodes\">")
    for name, b in sorted(lay["boxes"].items()):
        kind = "read" if b["read_only"] else "write"
        params = ", ".join(f"{p}{'' if i.get('required') else '?'} ({i.get('origin', '?')})" for p, i in b["params"].items())
        out.append(f'<g class="node {kind}" data-node="{escape(name)}"><title>{escape(name)} ({kind}): {escape(params or "no parameters")}</title>'
                   f'<rect x="{b["x"]:.1f}" y="{b["y"]:.1f}" width="{b["w"]:.1f}" height="{b["h"]}" rx="6" '
                   f'fill="{"#dbeafe" if b["read_only"] else "#fde2c8"}" stroke="{"#3b6ea8" if b["read_only"] else "#c26a1b"}"/>'
                   f'<text x="{b["x"] + b["w"] / 2:.1f}" y="{b["y"] + b["h"] / 2 + 4:.1f}" text-anchor="middle" fill="#111">'
                   f'{escape(b["label"])}</text></g>')
    out.append("</g>")
    ly = h - 14
    out.append(f'<g class="legend" font-size="{FONT_PX - 1}"><rect x="{MARGIN}" y="{ly - 10}" width="12" height="12" fill="#dbeafe" stroke="#3b6ea8"/>'
               f'<text x="{MARGIN + 16}" y="{ly}">reads</text>'
               f'<rect x="{MARGIN + 64}" y="{ly - 10}" width="12" height="12" fill="#fde2c8" stroke="#c26a1b"/>'
               f'<text x="{MARGIN + 80}" y="{ly}">writes</text>'
               f'<line x1="{MARGIN + 130}" y1="{ly - 4}" x2="{MARGIN + 160}" y2="{ly - 4}" stroke="#334" stroke-width="1.4"/>'
               f'<text x="{MARGIN + 164}" y="{ly}">confirmed by execution</text>'
               f'<line x1="{MARGIN + 310}" y1="{ly - 4}" x2="{MARGIN + 340}" y2="{ly - 4}" stroke="#999" stroke-dasharray="5 4"/>'
               f'<text x="{MARGIN + 344}" y="{ly}">proposed</text></g>')
    out.append("</svg>")
    return "".join(out)
