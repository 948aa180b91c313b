"""Test doubles every agent test reuses: a scripted chat model and a local OpenAI-compatible
HTTP stub server. Neither touches the network beyond 127.0.0.1."""
from .scripted import ScriptedChatModel, malformed, tool_call_message
from .openai_stub import OpenAIStubServer

__all__ = ["OpenAIStubServer", "ScriptedChatModel", "malformed", "tool_call_message"]
