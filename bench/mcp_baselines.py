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


def interleaved_ratio(env: Environment, tool: str, arguments: dict[str, Any], bare_fn, rounds: int = 41,
                      calls_per_round: int = 50) -> dict[str, Any]:
    """Our in-memory server against ``bare_fn`` on a bare FastMCP server, both sessions open on one
    event loop and measured in alternating rounds (ours, then bare, ``rounds`` times), so a load
    change on a shared machine hits both sides alike; the median of the per-round ratios, with
    each side's median CPU per call; also the ratio of our server with a worker-thread hop per call
    (``inline_calls=False``, the in-memory default before 2026-12). Each measured once, one after the other, the ratio swung 1.09-2.47x."""
    import statistics
    import time

    from mcp.server.fastmcp import FastMCP
    app = FastMCP("bare", log_level="WARNING")
    app.add_tool(bare_fn, name="tool")

    async def timed(session, name: str) -> float:
        # CPU time of this process (client, server and any thread they use): what a call costs,
        # unmoved by other processes taking the cores (wall time swung 30x on a loaded machine)
        t = time.process_time()
        for _ in range(calls_per_round):
            await _raw_call(session, name, arguments)
        return (time.process_time() - t) / calls_per_round

    async def run() -> dict[str, Any]:
        async with in_memory_session(env) as ours, create_connected_server_and_client_session(app._mcp_server) as bare, \
                in_memory_session(env, inline_calls=False) as hop:
            res = await _raw_call(ours, tool, arguments)
            assert not res.isError, res
            await timed(ours, tool), await timed(bare, "tool"), await timed(hop, tool)  # warm all three
            ours_s, bare_s, hop_s = [], [], []
            for _ in range(rounds):
                ours_s.append(await timed(ours, tool))
                bare_s.append(await timed(bare, "tool"))
                hop_s.append(await timed(hop, tool))
        ratios = [o / b for o, b in zip(ours_s, bare_s)]
        hop_ratios = [h / b for h, b in zip(hop_s, bare_s)]
        return {"rounds": rounds, "calls_per_round": calls_per_round, "median_ratio": statistics.median(ratios),
                "ratio_min": min(ratios), "ratio_max": max(ratios),
                "thread_hop_median_ratio": statistics.median(hop_ratios),
                "ours_us": statistics.median(ours_s) * 1e6, "bare_us": statistics.median(bare_s) * 1e6}

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
