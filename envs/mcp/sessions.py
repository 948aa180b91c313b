"""MCP client sessions onto our servers: in memory (a server task on the same event loop),
stdio and streamable HTTP, with the output-schema check made cheap, and ``EpisodeControl`` for the
hidden ``_ef_`` control operations."""
from __future__ import annotations

import contextlib
import functools
import json
from typing import Any, AsyncIterator

import anyio
import fastjsonschema
import mcp.types as types
from mcp.client.session import ClientSession
from mcp.server.lowlevel import Server

from envfactory.envs.mcp.server import CONTROL_PREFIX, build_server
from envfactory.envs.runtime.environment import Environment


class EpisodeControl:
    """Client-side control of the episode behind a session (never visible to the agent)."""

    def __init__(self, session: ClientSession, episode_id: str | None = None, token: str | None = None):
        self.session = session
        self.meta = {"episode_id": episode_id} if episode_id else None
        self.token = token

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        if self.token:
            args["token"] = self.token
        res = await self.session.call_tool(CONTROL_PREFIX + op, args, meta=self.meta)
        if res.isError:
            raise RuntimeError(res.content[0].text)
        return res.structuredContent or {}

    async def reset(self) -> str:
        return (await self._call("reset"))["state_hash"]

    async def state_hash(self) -> str:
        return (await self._call("state"))["state_hash"]

    async def diff(self) -> dict[str, Any]:
        return await self._call("diff")

    async def diff_summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for c in (await self.diff())["changes"]:
            out.setdefault(c["table"], {"insert": 0, "update": 0, "delete": 0})[c["kind"]] += 1
        return out

    async def snapshot(self) -> dict[str, Any]:
        return await self._call("snapshot")

    async def restore(self, snapshot: dict[str, Any]) -> str:
        return (await self._call("restore", **snapshot))["state_hash"]

    async def call(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        return await self.session.call_tool(tool, arguments, meta=self.meta)


# ---------------------------------------------------------------- client sessions

# Keywords that mean the same in draft 7 (fastjsonschema's newest) and 2020-12 (what the SDK's
# jsonschema check applies to a schema without "$schema"). Anything else (``$ref`` with siblings,
# tuple ``items``, ``prefixItems``, ``unevaluated*``, ``$schema`` ...) keeps the jsonschema path only.
_PORTABLE_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "description", "title",
    "default", "examples", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "anyOf",
    "oneOf", "allOf", "not", "format", "patternProperties", "propertyNames", "readOnly", "writeOnly", "$comment"})
_DATA_KEYWORDS = ("enum", "const", "default", "examples", "description", "title", "$comment", "required", "type")


def _portable(schema: Any) -> bool:
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict) or not set(schema) <= _PORTABLE_KEYWORDS:
        return False
    for key, value in schema.items():
        if key in ("enum", "const"):
            # Python's == makes True equal 1, jsonschema's does not: only text (and null) values
            if not all(v is None or isinstance(v, str) for v in (value if key == "enum" else [value])):
                return False
            continue
        if key in _DATA_KEYWORDS or not isinstance(value, (dict, list, bool)):
            continue
        if key in ("properties", "patternProperties"):
            if not all(_portable(v) for v in value.values()):
                return False
        elif key in ("anyOf", "oneOf", "allOf"):
            if not isinstance(value, list) or not all(_portable(v) for v in value):
                return False
        elif not _portable(value):  # items, additionalProperties, not, propertyNames: one subschema
            return False
    return True


@functools.lru_cache(maxsize=1024)
def _fast_output_check(schema_json: str):
    """A compiled check that may only *accept* a result (``None`` when the schema uses keywords it
    might read differently). Its rejections go to the jsonschema validator, which has the final
    word and the message; fastjsonschema is stricter on some keywords (``format``, ``uniqueItems`` with
    booleans), never laxer on the ones above, so the same results are accepted and rejected. ~20x cheaper per call."""
    schema = json.loads(schema_json)
    if not _portable(schema):
        return None
    try:
        return fastjsonschema.compile(schema, use_default=False)  # use_default=False: never write into the result
    except Exception:  # a schema fastjsonschema cannot compile: jsonschema alone decides
        return None


@functools.lru_cache(maxsize=1024)
def _output_validator(schema_json: str):
    """A jsonschema validator for one output schema, built (and the schema checked) once."""
    from jsonschema.validators import validator_for
    from referencing import Registry
    schema = json.loads(schema_json)
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=Registry())  # `$ref`s resolve within the schema, as in the SDK


class ValidatingClientSession(ClientSession):
    """The SDK client session, checking tool results against output schemas with validators built
    once per schema.

    The SDK's own check calls ``jsonschema.validate``, which re-validates the schema against its
    metaschema on every call (~8-15 ms per call with our output schemas on 2 cores, more than a
    model turn's worth of CPU). Same library, draft and registry, so the same results are accepted
    and rejected; tools this session has not listed fall back to the SDK's check.
    ``tests/test_mcp.py`` checks that the override is still the one the SDK calls.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._ef_output_schemas: dict[str, str | None] = {}

    async def list_tools(self, *args: Any, **kwargs: Any) -> types.ListToolsResult:
        result = await super().list_tools(*args, **kwargs)
        for tool in result.tools:
            self._ef_output_schemas[tool.name] = json.dumps(tool.outputSchema, sort_keys=True) if tool.outputSchema else None
        return result

    async def _validate_tool_result(self, name: str, result: types.CallToolResult) -> None:
        if name not in self._ef_output_schemas:
            return await super()._validate_tool_result(name, result)
        schema_json = self._ef_output_schemas[name]
        if schema_json is None:
            return
        if result.structuredContent is None:
            raise RuntimeError(f"Tool {name} has an output schema but did not return structured content")
        fast = _fast_output_check(schema_json)
        if fast is not None:
            try:
                fast(result.structuredContent)
                return
            except Exception:
                pass  # not accepted: jsonschema decides below, with its message
        from jsonschema import SchemaError, ValidationError
        try:
            _output_validator(schema_json).validate(result.structuredContent)
        except ValidationError as e:
            raise RuntimeError(f"Invalid structured content returned by tool {name}: {e}")
        except SchemaError as e:
            raise RuntimeError(f"Invalid schema for tool {name}: {e}")


@contextlib.asynccontextmanager
async def in_memory_session(env_or_server: Environment | Server, inline_calls: bool = True) -> AsyncIterator[ClientSession]:
    """A client session connected to a server running as a task on this event loop. Given an
    environment, its server runs calls inline on the loop (``build_server``'s ``inline_calls``):
    client and server share this loop anyway, and a worker-thread hop per call cost more than the
    in-memory call (1.7-1.8x a bare FastMCP server with it, ~1.0x without)."""
    from mcp.shared.memory import create_client_server_memory_streams

    server = env_or_server if isinstance(env_or_server, Server) else build_server(env_or_server, inline_calls=inline_calls)
    async with create_client_server_memory_streams() as ((client_read, client_write), (server_read, server_write)):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: server.run(server_read, server_write, server.create_initialization_options(),
                                             raise_exceptions=False))
            try:
                async with ValidatingClientSession(client_read, client_write) as session:
                    await session.initialize()
                    yield session
            finally:
                tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def stdio_session(command: str, args: list[str], env: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    from mcp.client.stdio import StdioServerParameters, stdio_client
    async with stdio_client(StdioServerParameters(command=command, args=args, env=env)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def http_session(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    import httpx
    from mcp.client.streamable_http import streamable_http_client
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300)) as client:
        async with streamable_http_client(url, http_client=client) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def multi_server_client(connections: dict[str, dict[str, Any]]):
    """A langchain-mcp-adapters client; use ``client.session(name)`` to hold one episode."""
    from langchain_mcp_adapters.client import MultiServerMCPClient
    return MultiServerMCPClient(connections)


