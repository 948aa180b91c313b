"""The dataset card of an export folder (its ``README.md``): per exported file, the counts, the tiers and
models that made the rows, the environments (bundled or carried in ``envs/``), and the reward the
rows are scored with. Several formats exported into one folder each keep their section
(``card.json`` holds them), so the card always describes every file beside it.

Also the record filters of ``envfactory export`` (``--tier``, ``--model``), which the card records.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from envfactory.data.records import TrajectoryRecord

CARD_FILE = "README.md"
CARD_DATA = "card.json"

REWARD = ("R = clip(tau*T + (1-tau)*S - L - F, 0, 1): T is an order-free F1 over tool calls (bipartite matching, "
          "masked arguments, numeric tolerance), S an F1 over the state cells the gold calls change, L and F length "
          "and format penalties; a sample whose environment drifted or crashed, or whose gold no longer replays, has "
          "no score (it is dropped, not scored 0). tau defaults to 0.5 (envfactory/data/reward.py).")


def tier_matches(record: TrajectoryRecord, tier: str) -> bool:
    """``model``: no step ran an offline tier; ``offline``: some step did; else some step's tier is ``tier``."""
    tiers = [str(t) for t in record.provenance.tiers.values()]
    offline = any(t.startswith("offline") for t in tiers)
    if tier == "model":
        return not offline
    if tier == "offline":
        return offline
    return tier in tiers


def filter_records(records: Iterable[TrajectoryRecord], tiers: list[str] | None = None,
                   models: list[str] | None = None) -> Iterator[TrajectoryRecord]:
    """Records that match every ``--tier`` given and were made (in some step) by one of ``models``."""
    for record in records:
        if tiers and not all(tier_matches(record, t) for t in tiers):
            continue
        if models and not set(models) & set(record.provenance.models.values()):
            continue
        yield record


class CardStats:
    """Counts over the records that went into one exported file (kept as counters: an export streams)."""

    def __init__(self) -> None:
        self.records = self.accepted = 0
        self.tiers: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        self.prompts: Counter[str] = Counter()
        self.difficulty: Counter[str] = Counter()
        self.envs: Counter[str] = Counter()

    def add(self, r: TrajectoryRecord) -> None:
        self.records += 1
        self.accepted += r.verification.accepted
        self.tiers.update(f"{step}={tier}" for step, tier in r.provenance.tiers.items())
        self.models.update(f"{step}={m}" for step, m in r.provenance.models.items())
        self.prompts.update(f"{p.id}@{p.version}" for p in r.provenance.prompts)
        self.difficulty[r.verification.difficulty or "unscored"] += 1
        self.envs.update(e.name for e in r.envs)

    def section(self, *, file: str, fmt: str, rows: int, skipped: int, filters: dict[str, Any] | None = None,
                environments: dict[str, str] | None = None) -> dict[str, Any]:
        """What the card says about the file."""
        return {"file": file, "format": fmt, "rows": rows, "records": self.records, "skipped_records": skipped,
                "accepted": self.accepted, "difficulty": dict(self.difficulty), "tiers": dict(self.tiers),
                "models": dict(self.models), "prompts": dict(self.prompts),
                "environments": {n: {"records": c, "origin": (environments or {}).get(n, "")}
                                 for n, c in sorted(self.envs.items())},
                "filters": {k: v for k, v in (filters or {}).items() if v}}


def write_card(out: str | Path, section: dict[str, Any], head: str = "") -> Path:
    """Add or replace the file's section and rewrite the folder's README.md (``head``: text that comes
    first, e.g. how to train on the folder)."""
    out = Path(out)
    data_path = out / CARD_DATA
    sections = json.loads(data_path.read_text()) if data_path.is_file() else {}
    sections[section["file"]] = section
    data_path.write_text(json.dumps(sections, indent=1, sort_keys=True) + "\n")
    card = out / CARD_FILE
    card.write_text((head + "\n" if head else "") + render(sections), encoding="utf-8")
    return card


def render(sections: dict[str, dict[str, Any]]) -> str:
    lines = ["# envfactory dataset card", "",
             "Verified multi-turn tool-use trajectories made by envfactory. Every row says what made it "
             "(`metadata` / `extra_info.provenance`: record key, each step's tier, models, prompt versions, "
             "`offline`): rows whose steps ran an offline tier (template queries, oracle rollouts) are scripted, "
             "not model output.", "", "## Reward", "", REWARD, ""]
    for name, s in sorted(sections.items()):
        lines += [f"## `{name}` ({s['format']})", "",
                  f"- rows: {s['rows']} from {s['records']} records ({s['accepted']} accepted); "
                  f"{s['skipped_records']} records skipped (see the export's summary)",
                  f"- filters: {json.dumps(s['filters']) if s['filters'] else 'none'}",
                  f"- difficulty: {_counts(s['difficulty'])}",
                  f"- tiers: {_counts(s['tiers'])}",
                  f"- models: {_counts(s['models']) or 'none (offline tiers only)'}",
                  f"- prompts: {_counts(s['prompts']) or 'none'}",
                  "- environments: " + ", ".join(
                      f"{n} ({e['records']} records{', ' + e['origin'] if e['origin'] else ''})"
                      for n, e in s["environments"].items()), ""]
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
