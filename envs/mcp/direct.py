"""LangChain tools that call an episode in this process, without MCP: for rollouts of trusted
environments loaded in-process, where a round trip through an in-memory MCP server (request
objects, JSON-RPC, the SDK's session tasks) costs several times the tool call itself.

They are what the MCP tools of ``tools.py`` are to the model and to the record: the same names,
descriptions, argument schemas and annotations (``bind_tools`` sends the same tool list), the same
text for a result and for an error (``isError`` becomes an error ``ToolMessage``), the same check of
results against output schemas (``ValidatingClientSession``'s validators). ``tests/test_direct_tools.py``
runs one script of calls through these tools, in-memory MCP and streamable HTTP MCP and compares
messages, errors and state hashes. Served and sandboxed environments keep the MCP path.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from typing import Any, AsyncIterator

from envfactory.envs.mcp.server import _tool_definitions
from envfactory.envs.mcp.sessions import _fast_output_check, _output_validator
from envfactory.envs.runtime.environment import Environment, Episode, ToolResult


def result_text(result: ToolResult) -> tuple[str, bool]:
    """(text, is_error) as an MCP client reads the call's result: the output as JSON text, or the
    error message (what ``server._result`` sends)."""
    if result.ok:
        return json.dumps(result.output, ensure_ascii=False), False
    return str(result.error), True


def check_output(name: str, output_schema_json: str | None, output: Any) -> None:
    """What ``ValidatingClientSession`` does with a result's structured content, same messages."""
    if output_schema_json is None:
        return
    structured = output if isinstance(output, dict) else {"result": output}
    fast = _fast_output_check(output_schema_json)
    if fast is not None:
        try:
            fast(structured)
            return
        except Exception:
            pass  # not accepted: jsonschema decides, with its message
    from jsonschema import SchemaError, ValidationError
    try:
        _output_validator(output_schema_json).validate(structured)
    except ValidationError as e:
        raise RuntimeError(f"Invalid structured content returned by tool {name}: {e}")
    except SchemaError as e:
        raise RuntimeError(f"Invalid schema for tool {name}: {e}")


class DirectTools:
    """One borrower's set of direct tools; ``episode`` is the episode they act on while lent."""

    def __init__(self, env: Environment, inline_calls: bool):
        self.env = env
        self.inline_calls = inline_calls
        self.episode: Episode | None = None
        self.output_schemas: dict[str, str | None] = {}
        self.tools = [self._tool(d) for d in _tool_definitions(env)]
        self.by_name = {t.name: t for t in self.tools}

    async def call(self, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        """Run one call on the lent episode: (text, is_error), as the MCP tools would give them.
        Raises what the MCP client raises for a result that violates its output schema."""
        episode = self.episode
        if episode is None:
            raise RuntimeError(f"direct tool {name} called while not lent to a rollout")
        arguments = arguments or {}
        if self.inline_calls:
            result = episode.call(name, arguments)
        else:  # off the event loop, as the MCP server runs calls by default
            result = await asyncio.to_thread(episode.call, name, arguments)
        if result.ok:
            check_output(name, self.output_schemas.get(name), result.output)
        return result_text(result)

    def _tool(self, definition) -> Any:
        from langchain_core.tools import ToolException
        name = definition.name
        self.output_schemas[name] = (json.dumps(definition.outputSchema, sort_keys=True)
                                     if definition.outputSchema else None)

        async def run(**arguments: Any) -> tuple[str, dict[str, Any]]:
            text, is_error = await self.call(name, arguments)
            if is_error:
                raise ToolException(text)
            return text, {"direct": True}

        return _direct_tool_class()(
            name=name, description=definition.description or "", args_schema=definition.inputSchema,
            coroutine=run, response_format="content_and_artifact",
            metadata=definition.annotations.model_dump() if definition.annotations is not None else None,
            handle_tool_error=True, holder=self)


@functools.lru_cache(maxsize=1)  # one class, built on first use (LangChain loads only when tools are made)
def _direct_tool_class():
    from langchain_core.tools import StructuredTool
    from pydantic import Field

    class DirectTool(StructuredTool):
        """A ``StructuredTool`` that knows its ``DirectTools`` (``direct_call_of``)."""
        holder: Any = Field(default=None, exclude=True)

    return DirectTool


class DirectToolPool:
    """``EpisodeSessionPool``'s interface (``tools_for(episode)``) over direct tools: each set of
    tools is built once and lent to one rollout at a time, pointed at that rollout's episode.

    ``inline_calls``: run calls on the event loop (a private rollout loop, e.g. a worker process's);
    otherwise each call runs in a worker thread, as the MCP server's calls do by default.
    """

    def __init__(self, env: Environment, max_idle: int = 64, inline_calls: bool = True):
        self.env = env
        self.max_idle = max_idle
        self.inline_calls = inline_calls
        self._idle: list[DirectTools] = []
        self.opened = 0

    @contextlib.asynccontextmanager
    async def tools_for(self, episode: Episode) -> AsyncIterator[list]:
        held = self._idle.pop() if self._idle else self._open()
        held.episode = episode
        try:
            yield held.tools
        finally:
            held.episode = None
            if len(self._idle) < self.max_idle:
                self._idle.append(held)

    def _open(self) -> DirectTools:
        self.opened += 1
        return DirectTools(self.env, self.inline_calls)

    async def aclose(self) -> None:
        self._idle.clear()


def direct_call_of(tool: Any):
    """The direct call behind a LangChain tool made here (``DirectTools.call`` for its name), or
    None for any other tool: a rollout with nothing tracing may skip LangChain's tool run."""
    holder = getattr(tool, "holder", None)
    if not isinstance(holder, DirectTools):
        return None
    name = tool.name
    return lambda arguments: holder.call(name, arguments)
