"""Judge: an optional secondary signal on a verified trajectory (role ``judge``, prompt
``judge/trajectory``). It never overrides a failed state check; with no model there is no judge."""
from __future__ import annotations

from pydantic import BaseModel, Field


class Verdict(BaseModel):
    score: int = Field(ge=1, le=5)
    issues: list[str] = []
