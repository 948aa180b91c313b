"""User simulator: holds the hidden intent and details, answers the agent, ends the conversation.

Role: ``user_simulator``; prompt: ``user_simulator/respond``. Offline tier: a scripted user that
says its next planned message whenever the agent stops, then ``###STOP###`` (labelled scripted).
"""
from __future__ import annotations

from envfactory.data.records import Message, UserTurn

from envfactory.agents.rollout_agent import STOP

OFFLINE_TIER = "offline:scripted-user"


class ScriptedUser:
    def __init__(self, turns: list[UserTurn]):
        self.turns = turns

    async def respond(self, conversation: list[Message], next_turn: int) -> str:
        return self.turns[next_turn].query if next_turn < len(self.turns) else STOP


class ModelUser:
    """A model playing the user: it sees the conversation with roles swapped (its own lines are
    the assistant's), and the hidden goal in its system prompt."""

    def __init__(self, model, turns: list[UserTurn], prompt_versions: dict[str, str] | None = None, config=None,
                 retry=None):
        from envfactory.prompts.registry import default_registry
        self.model, self.turns, self.config = model, turns, config
        self.retry = retry  # RetryPolicy for failed model calls (agents/transient.py)
        intent = " Then: ".join(t.query for t in turns)
        details = {k: v for t in turns for k, v in t.details.items()}
        rendered = default_registry().render("user_simulator/respond",
                                             (prompt_versions or {}).get("user_simulator/respond", "latest"),
                                             intent=intent, details=details)
        self.system, self.prompt = rendered.text, rendered.ref

    async def respond(self, conversation: list[Message], next_turn: int) -> str:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        from envfactory.agents.transient import acall_with_retries
        swapped = [SystemMessage(self.system)]
        for m in conversation:
            if m.role == "user":
                swapped.append(AIMessage(m.content))
            elif m.role == "assistant" and m.content:
                swapped.append(HumanMessage(m.content))
        reply = await acall_with_retries(lambda: self.model.ainvoke(swapped, config=self.config), self.retry)
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        return STOP if STOP in text else text


def respond(model, turns: list[UserTurn], conversation: list[Message], next_turn: int, *,
            prompt_versions: dict[str, str] | None = None, retry=None) -> str:
    """The simulated user's next message (``###STOP###`` when done): a plain call of ``model``."""
    import asyncio
    return asyncio.run(ModelUser(model, turns, prompt_versions, retry=retry).respond(conversation, next_turn))
