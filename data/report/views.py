"""Records shaped for the pages: one row per record for the index (filters, search), and a turn-by-turn
view of a trajectory (what the user said, the gold calls beside the rollout's calls, the state changes
that turn made, the selectors that make it determined)."""
from __future__ import annotations

import json
from typing import Any

from envfactory.data.records import TrajectoryRecord

REASON_WORDS = 6  # a rejection reason's category: its text up to the first colon, at most this many words


def reason_category(reason: str | None) -> str:
    if not reason:
        return ""
    head = reason.split(":", 1)[0].strip()
    return " ".join(head.split()[:REASON_WORDS])


def rollout_tier(record: TrajectoryRecord) -> str:
    return record.provenance.tiers.get("rollout", "")


def tiers_label(record: TrajectoryRecord) -> str:
    """"offline" when no step used a model, else the models by role."""
    if record.provenance.models:
        return ", ".join(f"{role}={m}" for role, m in sorted(record.provenance.models.items()))
    return "offline"


def index_row(record: TrajectoryRecord) -> dict[str, Any]:
    """What the trajectories page filters and searches on (kept small: thousands ship in one file)."""
    reward = record.verification.reward or {}
    first = next((t.query for t in record.turns if t.query), "")
    return {"key": record.key, "envs": [e.name for e in record.envs], "status": record.status,
            "reason": reason_category(record.verification.reason), "score": reward.get("score"),
            "T": reward.get("trajectory"), "S": reward.get("state"), "pass_rate": record.verification.pass_rate,
            "difficulty": record.verification.difficulty, "tier": tiers_label(record), "rollout": rollout_tier(record),
            "turns": len(record.turns), "calls": sum(len(t.gold_calls) for t in record.turns), "query": first[:160]}


def _segments(record: TrajectoryRecord) -> list[list[dict[str, Any]]]:
    """The conversation cut at each user message: segment i holds user turn i and what followed it."""
    segments: list[list[dict[str, Any]]] = []
    for m in record.messages:
        d = m.model_dump()
        if m.role == "user":
            segments.append([d])
        elif segments:
            segments[-1].append(d)
    return segments


def _calls(segment: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, results = [], {}
    for m in segment:
        if m["role"] == "tool":
            results[m["tool_call_id"]] = m["content"]
    for m in segment:
        for c in m.get("tool_calls", []):
            out.append({"name": c["name"], "arguments": c["arguments"], "result": results.get(c["id"], "")})
    return out


def _changes(diff: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((diff or {}).get("changes", []))


def _new_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Changes in ``after`` (cumulative from the initial state) that ``before`` did not have yet."""
    seen = {json.dumps(c, sort_keys=True, default=str) for c in _changes(before)}
    return [c for c in _changes(after) if json.dumps(c, sort_keys=True, default=str) not in seen]


def turn_views(record: TrajectoryRecord) -> list[dict[str, Any]]:
    """Per user turn: query, gold calls (masked arguments marked, selectors), the rollout's calls and
    results, and the state changes of that turn (from the diffs stored with the record)."""
    segments = _segments(record)
    diffs = list(getattr(record.verification, "state_diffs", None) or [])
    views = []
    for i, turn in enumerate(record.turns):
        seg = segments[i] if i < len(segments) and len(segments) == len(record.turns) else []
        before = diffs[i - 1] if 0 < i <= len(diffs) else {}
        after = diffs[i] if i < len(diffs) else None
        changes = None
        if after is not None:
            changes = {env: _new_changes((before or {}).get(env), d) for env, d in after.items()}
        views.append({"n": i + 1, "query": turn.query,
                      "gold": [{"env": c.env, "name": c.name, "arguments": c.arguments, "masked": list(c.masked_arguments),
                                "selectors": _selectors(c)} for c in turn.gold_calls],
                      "rollout": _calls(seg), "replies": [m["content"] for m in seg if m["role"] == "assistant" and m["content"]],
                      "changes": changes})
    return views


def _selectors(call: Any) -> list[dict[str, Any]]:
    """How the user singles out each argument taken from an earlier output (records that have them)."""
    found = getattr(call, "selectors", None) or {}
    if isinstance(found, dict):
        return [{"param": p, **(s if isinstance(s, dict) else {"text": str(s)})} for p, s in found.items()]
    return list(found)


def change_summary(changes: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in changes:
        counts = out.setdefault(c["table"], {"insert": 0, "update": 0, "delete": 0})
        counts[c["kind"]] += 1
    return out


def pretty(value: Any) -> str:
    """JSON for the page: tool outputs arrive as JSON text, arguments as objects."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=1, ensure_ascii=False, default=str)
