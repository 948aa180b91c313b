"""Small plots for the overview, as inline SVG text (matplotlib, no files, no fonts fetched)."""
from __future__ import annotations

import io
from typing import Iterable

WIDTH_IN, HEIGHT_IN = 4.6, 2.4


def _svg(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: it is inlined in HTML


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text (searchable, small)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def outcome_bars(accepted: int, rejected_by_reason: dict[str, int]) -> str:
    """Accepted next to each rejection reason (horizontal bars, largest first)."""
    fig, ax = _figure()
    labels = ["accepted"] + [r or "unknown" for r, _ in sorted(rejected_by_reason.items(), key=lambda kv: -kv[1])]
    values = [accepted] + sorted(rejected_by_reason.values(), reverse=True)
    colors = ["#3a8d5c"] + ["#c0504d"] * (len(values) - 1)
    ax.barh(range(len(values))[::-1], values, color=colors)
    ax.set_yticks(range(len(values))[::-1], labels, fontsize=8)
    ax.set_xlabel("tasks", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    for i, v in zip(range(len(values))[::-1], values):
        ax.text(v, i, f" {v}", va="center", fontsize=8)
    return _svg(fig)


def histogram(values: Iterable[float], xlabel: str, bins: int = 10) -> str:
    values = [v for v in values if v is not None]
    fig, ax = _figure()
    ax.hist(values, bins=bins, range=(0.0, 1.0), color="#4a78b5", edgecolor="white")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("tasks", fontsize=8)
    ax.tick_params(labelsize=8)
    return _svg(fig)
