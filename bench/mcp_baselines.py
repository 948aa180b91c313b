"""Baselines the MCP benchmark compares our servers with: the reference system's JSON reset
through ``load_scenario``, and the same function on a bare FastMCP server."""
from __future__ import annotations

import asyncio
from typing import Any

import mcp.types as types
from mcp.client.session import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session

from envfactory.envs.mcp.sessions import in_memory_session
from envfactory.envs.runtime.environment import Environment


def reference_style_scenario_server(scenario: dict[str, Any], repeat: int) -> float:
    """The reference system's reset: ship the whole state as JSON through an MCP tool call
    (``load_scenario``) into pydantic models, and dump it back (``save_scenario``), on a bare
    FastMCP server in memory. Returns median seconds per load+save."""
    import statistics
    import time

    from mcp.server.fastmcp import FastMCP
    from pydantic import BaseModel

    class Entity(BaseModel):
        model_config = {"extra": "allow"}

    class Scenario(BaseModel):
        tables: dict[str, dict[str, Entity]]

    holder: dict[str, Scenario] = {}
    app = FastMCP("reference-style", log_level="WARNING")

    @app.tool()
    def load_scenario(scenario: dict) -> str:
        holder["s"] = Scenario(tables=scenario)
        return "Successfully loaded"

    @app.tool()
    def save_scenario() -> dict:
        return holder["s"].model_dump()["tables"]

    async def run() -> float:
        async with create_connected_server_and_client_session(app._mcp_server) as session:
            samples = []
            for i in range(repeat + 1):
                t = time.perf_counter()
                await session.call_tool("load_scenario", {"scenario": scenario})
                await session.call_tool("save_scenario", {})
                if i:
                    samples.append(time.perf_counter() - t)
            return statistics.median(samples)

    return asyncio.run(run())


async def _raw_call(session: ClientSession, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    """tools/call without the SDK client's per-call jsonschema check of the result, so that
    benchmarks compare servers rather than how rich each tool's output schema is."""
    request = types.ClientRequest(types.CallToolRequest(params=types.CallToolRequestParams(name=name, arguments=arguments)))
    return await session.send_request(request, types.CallToolResult)


def bare_fastmcp_call_seconds(fn, arguments: dict[str, Any], n: int, client_validation: bool = False) -> float:
    """Per-call seconds of ``fn`` registered on a bare FastMCP server, called in memory."""
    import time

    from mcp.server.fastmcp import FastMCP
    app = FastMCP("bare", log_level="WARNING")
    app.add_tool(fn, name="tool")

    async def run() -> float:
        async with create_connected_server_and_client_session(app._mcp_server) as session:
            call = session.call_tool if client_validation else (lambda name, args: _raw_call(session, name, args))
            await call("tool", arguments)
            t = time.perf_counter()
            for _ in range(n):
                await call("tool", arguments)
            return (time.perf_counter() - t) / n

    return asyncio.run(run())


def our_in_memory_call_seconds(env: Environment, tool: str, arguments: dict[str, Any], n: int,
                               client_validation: bool = False) -> float:
    import time

    async def run() -> float:
        async with in_memory_session(env) as session:
            call = session.call_tool if client_validation else (lambda name, args: _raw_call(session, name, args))
            res = await call(tool, arguments)
            assert not res.isError, res
            t = time.perf_counter()
            for _ in range(n):
                await call(tool, arguments)
            return (time.perf_counter() - t) / n

    return asyncio.run(run())
