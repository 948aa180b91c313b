"""The scripted chat model lives in the package (``envfactory.agents.testing``), for notebooks too."""
from envfactory.agents.testing import ScriptedChatModel, malformed, tool_call_message

__all__ = ["ScriptedChatModel", "malformed", "tool_call_message"]
