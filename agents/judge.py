"""Judge: an optional secondary signal on a verified trajectory (role ``judge``, prompt
``judge/trajectory``). It never overrides a failed state check; with no model there is no judge.

It also settles, where a model paraphrased, whether an order selector ("the run with the latest created
at") is still conveyed after refinement (prompt ``judge/selectors``); exact values are checked in code only."""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field


class SelectorVerdict(BaseModel):
    """One answer per selector asked about, in order."""

    conveyed: list[bool]


class Verdict(BaseModel):
    score: int = Field(ge=1, le=5)
    issues: list[str] = []


def judge_prompt(messages: list[dict[str, Any]], prompt_version: str = "latest"):
    """The rendered ``judge/trajectory`` prompt for a conversation (OpenAI-style message dicts)."""
    from envfactory.prompts.registry import default_registry
    lines = []
    for m in messages:
        calls = "; ".join(f"{c['name']}({json.dumps(c['arguments'])})" for c in m.get("tool_calls") or [])
        lines.append(f"{m['role']}: {m['content']}" + (f" [calls: {calls}]" if calls else ""))
    return default_registry().render("judge/trajectory", prompt_version, conversation="\n".join(lines))


def judge(messages: list[dict[str, Any]], model, *, prompt_version: str = "latest", retry=None) -> Verdict:
    """The judge's verdict on a conversation (a plain call; QueryGen records it, never decides by it)."""
    from envfactory.agents.structured import invoke_structured
    return invoke_structured(model, judge_prompt(messages, prompt_version).messages(), Verdict, retry=retry).value
