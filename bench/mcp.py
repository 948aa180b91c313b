"""Per-call cost of the call paths, as ratios measured in one process:
direct ``Episode.call`` vs a plain Python call of the same tool function (target <= 5x), and our
in-memory MCP server vs the same function on a bare FastMCP server (target <= 1.3x)."""
from __future__ import annotations

import time
from typing import Any

from envfactory.envs.runtime.context import ToolContext
from envfactory.bench.mcp_baselines import bare_fastmcp_call_seconds, our_in_memory_call_seconds
from envfactory.envs.runtime.environment import Environment


def _per_call(fn, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def bench_mcp(n_calls: int = 2000, env_name: str = "library", tool: str = "get_book",
              arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    arguments = arguments or {"book_id": 7}
    env = Environment.load(env_name)
    ep = env.episode()
    fn = env.tools[tool].fn
    ctx = ToolContext(ep.conn, env.manifest.clock, env.name, env.primary_keys)
    plain = _per_call(lambda: fn(ctx, **arguments), n_calls)
    direct = _per_call(lambda: ep.call(tool, arguments), n_calls)
    mcp_n = max(200, n_calls // 4)
    ours = our_in_memory_call_seconds(env, tool, arguments, mcp_n)
    bare_ep = env.episode()
    bare_ctx = ToolContext(bare_ep.conn, env.manifest.clock, env.name, env.primary_keys)

    def bare_tool(book_id: int) -> dict:
        return fn(bare_ctx, book_id=book_id)

    bare = bare_fastmcp_call_seconds(bare_tool, arguments, mcp_n)
    # The SDK client re-validates every result against the tool's output schema with jsonschema;
    # ours are real schemas, the bare tool's is "any object", so that cost is reported apart.
    ours_validated = our_in_memory_call_seconds(env, tool, arguments, mcp_n // 2, client_validation=True)
    return {"tool": tool, "plain_python_us": plain * 1e6, "direct_path_us": direct * 1e6,
            "direct_over_plain": direct / plain, "our_mcp_in_memory_us": ours * 1e6,
            "bare_fastmcp_in_memory_us": bare * 1e6, "ours_over_bare_fastmcp": ours / bare,
            "ours_with_sdk_client_output_validation_us": ours_validated * 1e6,
            "targets": {"direct <= 5x plain": direct / plain <= 5, "ours <= 1.3x bare FastMCP": ours / bare <= 1.3}}
