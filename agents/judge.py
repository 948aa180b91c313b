"""Judge: an optional secondary signal on a verified trajectory (role ``judge``, prompt
``judge/trajectory``). It never overrides a failed state check; with no model there is no judge.

It also settles, where a model paraphrased, whether an order selector ("the run with the latest created
at") is still conveyed after refinement (prompt ``judge/selectors``); exact values are checked in code only."""
from __future__ import annotations

from pydantic import BaseModel, Field


class SelectorVerdict(BaseModel):
    """One answer per selector asked about, in order."""

    conveyed: list[bool]


class Verdict(BaseModel):
    score: int = Field(ge=1, le=5)
    issues: list[str] = []
