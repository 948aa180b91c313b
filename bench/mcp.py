"""Per-call cost of the call paths, as ratios measured in one process:
direct ``Episode.call`` vs a plain Python call of the same tool function (target <= 5x), and our
in-memory MCP server vs the same function on a bare FastMCP server (target <= 1.3x), both sessions open
at once and measured in alternating rounds of CPU time (the median of the per-round ratios)."""
from __future__ import annotations

import time
from typing import Any

from envfactory.envs.runtime.context import ToolContext
from envfactory.bench.mcp_baselines import interleaved_ratio, our_in_memory_call_seconds
from envfactory.envs.runtime.environment import Environment


def _per_call(fn, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def bench_mcp(n_calls: int = 2000, env_name: str = "library", tool: str = "get_book",
              arguments: dict[str, Any] | None = None, rounds: int = 41) -> dict[str, Any]:
    arguments = arguments or {"book_id": 7}
    env = Environment.load(env_name)
    ep = env.episode()
    fn = env.tools[tool].fn
    ctx = ToolContext(ep.conn, env.manifest.clock, env.name, env.primary_keys)
    plain = _per_call(lambda: fn(ctx, **arguments), n_calls)
    direct = _per_call(lambda: ep.call(tool, arguments), n_calls)
    bare_ep = env.episode()
    bare_ctx = ToolContext(bare_ep.conn, env.manifest.clock, env.name, env.primary_keys)

    def bare_tool(book_id: int) -> dict:
        return fn(bare_ctx, book_id=book_id)

    # ours and bare FastMCP in alternating rounds on one loop: the median of per-round ratios
    versus = interleaved_ratio(env, tool, arguments, bare_tool, rounds=rounds)
    # The SDK client re-validates every result against the tool's output schema with jsonschema;
    # ours are real schemas, the bare tool's is "any object", so that cost is reported apart.
    ours_validated = our_in_memory_call_seconds(env, tool, arguments, max(100, n_calls // 8), client_validation=True)
    return {"tool": tool, "plain_python_us": plain * 1e6, "direct_path_us": direct * 1e6,
            "direct_over_plain": direct / plain, "our_mcp_in_memory_us": versus["ours_us"],
            "bare_fastmcp_in_memory_us": versus["bare_us"], "ours_over_bare_fastmcp": versus["median_ratio"],
            "ours_over_bare_min": versus["ratio_min"], "ours_over_bare_max": versus["ratio_max"],
            "ours_with_thread_hop_over_bare": versus["thread_hop_median_ratio"],
            "rounds": versus["rounds"],
            "ours_with_sdk_client_output_validation_us": ours_validated * 1e6,
            "targets": {"direct <= 5x plain": direct / plain <= 5, "ours <= 1.3x bare FastMCP": versus["median_ratio"] <= 1.3}}
