"""Benchmarks, each reporting ratios against a baseline measured in the same process (``envfactory
bench``): ``envs`` (reset, snapshot, episodes, concurrency), ``mcp`` (our MCP server against a bare
FastMCP one; baselines in ``mcp_baselines``), ``sampling`` (chain sampling), ``reward`` (the composite
reward), ``querygen`` (QueryGen throughput against the ideal) and ``rollout`` (one task's CPU, step
by step). May import anything in ``envfactory``; nothing imports them but the CLI and the tests.
"""
