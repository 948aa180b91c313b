"""The canonical trajectory record: one shape that QueryGen writes and every exporter reads."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

RECORD_VERSION = "1"


class ToolCallOut(BaseModel):
    """An assistant tool call in OpenAI chat format (arguments kept as a dict; exporters encode)."""

    id: str
    name: str
    arguments: dict[str, Any]


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCallOut] = []
    tool_call_id: str | None = None
    name: str | None = None            # tool name on tool messages

    def openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                                 for c in self.tool_calls]
        if self.role == "tool":
            out["tool_call_id"] = self.tool_call_id
            out["name"] = self.name
        return out


class GoldCallRef(BaseModel):
    env: str
    name: str
    arguments: dict[str, Any]
    masked_arguments: list[str] = []
    # param -> how the user singles out the listed element the value comes from (kind, entity,
    # fields, values or order, call, array, among, text); see ``envs.chains.selectors.Selector``
    selectors: dict[str, dict[str, Any]] = {}


class UserTurn(BaseModel):
    """What the user asks in one turn and the calls that turn must make."""

    query: str
    gold_calls: list[GoldCallRef]
    intent: str = ""                   # the hidden goal a user simulator holds
    details: dict[str, Any] = {}       # values the user knows and may reveal when asked


class EnvRef(BaseModel):
    name: str
    version: str
    initial_state_hash: str
    final_state_hash: str | None = None  # gold final state, recomputed by replaying the gold calls


class Verification(BaseModel):
    accepted: bool
    reason: str | None = None            # why rejected
    reward: dict[str, Any] = {}          # every reward component of the kept rollout
    pass_rate: float | None = None       # share of k rollouts that passed
    rollouts: int = 0
    difficulty: Literal["easy", "medium", "hard", "unsolved"] | None = None
    judge: dict[str, Any] | None = None  # optional secondary LLM signal
    tokens: int | None = None            # model tokens the k rollouts used (None: not measured, e.g. older records)
    # the kept rollout's state after each user turn: env -> StateDiff (as a dict) from the initial state;
    # O(changed cells), so a viewer shows each turn's changes without replaying anything
    state_diffs: list[dict[str, dict[str, Any]]] | None = None


class PromptUse(BaseModel):
    id: str
    version: str
    sha256: str


class Provenance(BaseModel):
    tiers: dict[str, str] = {}           # step -> "model" | "offline" (scripted output is never called model output)
    models: dict[str, str] = {}          # role -> model name
    prompts: list[PromptUse] = []
    seed: int | None = None
    chain_id: str | None = None
    code_version: str = ""
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class TrajectoryRecord(BaseModel):
    record_version: str = RECORD_VERSION
    key: str                             # deterministic: the same task gives the same key (idempotent store)
    mode: Literal["single", "conv"] = "single"
    envs: list[EnvRef]
    tools: list[dict[str, Any]]          # OpenAI function specs the agent saw
    system_prompt: str = ""
    turns: list[UserTurn]
    messages: list[Message]
    verification: Verification
    provenance: Provenance

    @property
    def status(self) -> str:
        return "accepted" if self.verification.accepted else "rejected"

    def gold_calls(self) -> list[GoldCallRef]:
        return [c for t in self.turns for c in t.gold_calls]


def record_key(*parts: Any) -> str:
    """A deterministic key from what defines a task (chain, mode, seed, prompt versions...)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
