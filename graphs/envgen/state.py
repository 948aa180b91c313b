"""EnvGen's graph state: the target, the brief, every attempt, the budget spent, the verdict."""
from __future__ import annotations


import operator
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict  # not typing.TypedDict: pydantic (Studio's schemas) needs this one on 3.11






class EnvGenInput(TypedDict, total=False):
    target: str
    name: str

class EnvGenState(EnvGenInput, total=False):
    run_id: str
    brief: dict[str, Any]
    files: dict[str, str]
    tests: dict[str, Any]
    attempt: int
    attempts: Annotated[list[dict[str, Any]], operator.add]
    best: dict[str, Any]
    repair_brief: str
    disputed_tests: list[str]
    code_notes: str
    tokens: int
    prompts: Annotated[list[dict[str, Any]], operator.add]
    tiers: dict[str, str]
    models: dict[str, str]
    failure: str
    attempt_error: str
    review: str             # the reviewer's last answer: approved, feedback or rejected (with review on)
    status: Literal["accepted", "rejected"]
    reason: str
    package_path: str
