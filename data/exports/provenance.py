"""What made a row, on every exported row: the record's key, each step's tier, the models and the
prompt versions, and whether any step was an offline (scripted) tier, so offline rows can be filtered."""
from __future__ import annotations

from typing import Any

from envfactory.data.records import TrajectoryRecord


def row_metadata(record: TrajectoryRecord) -> dict[str, Any]:
    tiers = dict(record.provenance.tiers)
    return {"record_key": record.key, "tiers": tiers, "models": dict(record.provenance.models),
            "prompts": [f"{p.id}@{p.version}" for p in record.provenance.prompts],
            "offline": any(str(t).startswith("offline") for t in tiers.values())}
