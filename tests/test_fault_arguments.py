"""An agent cannot opt out of its reward: whatever arguments it sends, a catalog tool answers with a
success, an ``invalid_arguments`` or a domain error (all of which score), never ``internal`` (which
drops the sample), and a refused call leaves the state as it was.

A property test sends random JSON values (huge integers, lone surrogates, NaN and Infinity, deep
nesting, long strings) and values shaped by each tool's own schema to every catalog tool; named
cases pin the faults found by hand, over the direct call path, JSON text, MCP, a pyclass package and
the verl tool-call parser."""
from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envfactory.envs import Environment
from envfactory.envs.runtime.arguments import (INT_MAX, INT_MIN, MAX_DEPTH, MAX_STRING_CHARS, argument_problem,
                                               loads_arguments)
from envfactory.envs.runtime.packages import catalog_names

SCORED = {"invalid_arguments", "domain"}


def _nest(depth: int, leaf=1):
    value = leaf
    for _ in range(depth):
        value = {"a": value} if depth % 2 else [value]
    return value


# ------------------------------------------------------------------ strategies

_text = st.text(max_size=40) | st.builds(lambda a, b: a + "\ud800" + b, st.text(max_size=5), st.text(max_size=5))
_huge_int = st.integers(INT_MAX + 1, 2**200) | st.integers(-(2**200), INT_MIN - 1)
_edge_int = st.sampled_from([0, -1, 1, INT_MAX, INT_MIN, 2**31, -(2**31) - 1])
_odd_float = st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 5e-324])
_long_text = st.integers(MAX_STRING_CHARS - 2, MAX_STRING_CHARS + 2).map(lambda n: "%_" * (n // 2) + "x" * (n % 2))
_scalar = (st.none() | st.booleans() | st.integers() | _huge_int | _edge_int | st.floats() | _odd_float | _text)
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                     max_leaves=12)
_deep = st.integers(MAX_DEPTH - 2, 3000).map(_nest)
_odd_value = _json | _long_text | _deep | st.just("%" * 1_000_000)


def _for_schema(schema: dict) -> st.SearchStrategy:
    """Values a schema asks for (often valid, with edges), mixed with odd values of every kind."""
    kind = schema.get("type")
    options = [_odd_value]
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    if kind == "integer":
        lo, hi = schema.get("minimum", INT_MIN), schema.get("maximum", INT_MAX)
        options += [st.integers(lo, hi), st.integers(-3, 400), _edge_int]
    elif kind == "number":
        options += [st.floats(allow_nan=False, allow_infinity=False), st.integers(-3, 10_000), _odd_float]
    elif kind == "string":
        options += [_text, st.sampled_from(["2026-01-15", "2026-02-30", "2026-01-15T09:00:00Z", "", " ", "a@b.co", "%", "_",
                                            "'; DROP TABLE x; --"]), _long_text]
    elif kind == "boolean":
        options.append(st.booleans())
    elif kind == "array":
        options.append(st.lists(_for_schema(schema.get("items") or {}), max_size=5))
    elif kind == "object":
        options.append(_arguments(schema))
    return st.one_of(options)


def _arguments(schema: dict) -> st.SearchStrategy:
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fixed = {p: _for_schema(s) for p, s in props.items() if p in required}
    optional = {p: _for_schema(s) for p, s in props.items() if p not in required}
    shaped = st.fixed_dictionaries(fixed, optional=optional)
    return shaped | st.dictionaries(_text, _json, max_size=3) | shaped.flatmap(
        lambda args: st.builds(lambda extra: {**args, **extra}, st.dictionaries(_text, _json, max_size=2)))


# ------------------------------------------------------------------ the property

_ENVS: dict[str, Environment] = {}
CASES = []
for _name in catalog_names():
    _ENVS[_name] = Environment.load(_name)
    CASES += [(_name, spec.name) for spec in _ENVS[_name].tool_specs]


@pytest.mark.parametrize("env_name,tool", CASES, ids=[f"{e}.{t}" for e, t in CASES])
def test_no_argument_makes_a_catalog_tool_fail_internally(env_name, tool):
    env = _ENVS[env_name]
    spec = env.manifest.tool(tool)
    episode = env.episode()
    seen: dict[str, int] = {}

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_arguments(spec.input_schema))
    def check(arguments):
        before = episode.state_hash()
        result = episode.call(tool, arguments)
        kind = "ok" if result.ok else result.error_kind
        seen[kind] = seen.get(kind, 0) + 1
        assert result.ok or result.error_kind in SCORED, (arguments if len(repr(arguments)) < 500 else "(long)", result.error)
        if not result.ok:
            assert episode.state_hash() == before, f"a refused call changed the state: {result.error}"
            assert result.error
            if result.error_kind == "invalid_arguments":  # ours: a message to act on, never an echo of the input
                assert len(result.error) < 1_000, result.error[:300]
        elif episode.state_hash() != env.initial_hash:
            episode.reset()

    try:
        check()
    finally:
        episode.close()
    assert seen.get("invalid_arguments"), seen  # the odd values were sent and refused


# ------------------------------------------------------------------ named cases

ODD = [
    ("integer above 2^63-1", 2**63, "integers must lie between"),
    ("integer below -2^63", -(2**63) - 1, "integers must lie between"),
    ("a 4,300-digit integer", 10**4300, "integers must lie between"),
    ("NaN", float("nan"), "numbers must be finite"),
    ("Infinity", float("inf"), "numbers must be finite"),
    ("lone surrogate", "Dune\udc00", "lone surrogate at character 4"),
    ("1 MB LIKE pattern", "%" * 1_000_000, f"at most {MAX_STRING_CHARS}"),
    ("deep nesting", _nest(5000, "x"), f"deeper than {MAX_DEPTH}"),
    ("bytes", b"abc", "is a bytes, not a JSON value"),
    ("a tuple", (1, 2), "is a tuple, not a JSON value"),
]


@pytest.mark.parametrize("label,value,says", ODD, ids=[c[0] for c in ODD])
@pytest.mark.parametrize("tool,param", [("search_books", "query"), ("get_book", "book_id"), ("checkout_book", "book_id")])
def test_odd_values_are_invalid_arguments_that_name_the_argument(library_env, label, value, says, tool, param):
    ep = library_env.episode()
    args = {"member_id": 1, "book_id": 2} if tool == "checkout_book" else {}
    res = ep.call(tool, {**args, param: value})
    assert not res.ok and res.error_kind == "invalid_arguments", res.error
    assert says in res.error and (f"argument {param!r}" in res.error or "nest" in res.error), res.error
    assert ep.state_hash() == library_env.initial_hash and ep.calls[-1].error_kind == "invalid_arguments"


def test_bounds_are_inclusive(library_env):
    ep = library_env.episode()
    assert argument_problem({"a": INT_MAX, "b": INT_MIN, "c": "x" * MAX_STRING_CHARS, "d": 1e308}) is None
    assert argument_problem({"a": _nest(MAX_DEPTH - 1)}) is None
    assert "deeper" in argument_problem({"a": _nest(MAX_DEPTH)})
    res = ep.call("get_book", {"book_id": INT_MAX})
    assert res.error_kind == "domain" and "does not exist" in res.error


def test_odd_names_and_too_many_values_are_refused():
    assert "a name in the arguments" in argument_problem({"k\ud800": 1})
    assert "a name in argument 'outer'" in argument_problem({"outer": {"x" * 20_000: 1}})
    assert "key of type int" in argument_problem({"outer": {1: 2}})
    assert "more than" in argument_problem({"a": list(range(20_000))})


@pytest.mark.parametrize("text,says", [
    ('{"book_id": NaN}', "NaN is not a JSON number"),
    ('{"book_id": -Infinity}', "-Infinity is not a JSON number"),
    ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
    ('{"book_id": 1', "Expecting"),
    ('{"query": "\\ud800"}', "lone surrogate"),
    ('{"book_id": 99999999999999999999999}', "integers must lie between"),
])
def test_json_text_arguments_are_checked_too(library_env, text, says):
    ep = library_env.episode()
    res = ep.call("search_books" if "query" in text else "get_book", text)
    assert res.error_kind == "invalid_arguments" and says in res.error, res.error


def test_loads_arguments_refuses_what_json_loads_lets_through():
    assert json.loads('{"x": NaN}')["x"] != json.loads('{"x": NaN}')["x"]  # what the standard parser does
    with pytest.raises(ValueError, match="NaN"):
        loads_arguments('{"x": NaN}')
    with pytest.raises(ValueError, match="nests too deeply"):
        loads_arguments("[" * 100_000 + "]" * 100_000)
    assert loads_arguments('{"x": [1, 2.5, "a"]}') == {"x": [1, 2.5, "a"]}


def test_a_pyclass_package_refuses_the_same_values(tmp_path):
    from pathlib import Path

    from envfactory.envs.imports.importer import import_class
    imported = import_class(Path(__file__).parent / "fixtures" / "pyclass" / "parking_permits.py", tmp_path / "parking",
                            source="class")
    env = Environment.load(imported.package, trust=True)
    ep = env.episode()
    spec = env.manifest.tool("issue_permit")
    param = "plate"
    for value in (2**64, float("nan"), "a\ud800", "x" * (MAX_STRING_CHARS + 1), _nest(100)):
        before = ep.state_hash()
        res = ep.call(spec.name, {param: value})
        assert res.error_kind == "invalid_arguments", (value if not isinstance(value, str) else len(value), res.error)
        assert ep.state_hash() == before


def test_over_mcp_an_odd_value_is_an_error_the_agent_reads(library_env):
    from envfactory.envs.mcp import build_server, episode_tools

    async def go():
        ep = library_env.episode()
        async with episode_tools(build_server(library_env, episode=ep)) as (tools, _):
            tool = next(t for t in tools if t.name == "get_book")
            outs = []
            for value in (2**70, "x\ud800", "%" * 200_000):
                msg = await tool.ainvoke({"type": "tool_call", "id": "c1", "name": "get_book", "args": {"book_id": value}})
                outs.append(msg)
        return ep, outs

    ep, outs = asyncio.run(go())
    assert all(m.status == "error" for m in outs), [m.content for m in outs]
    assert [c.error_kind for c in ep.calls] == ["invalid_arguments"] * 3
    assert ep.state_hash() == library_env.initial_hash


def test_verl_tool_call_parser_counts_deep_nesting_as_malformed():
    from envfactory.data.exports.verl_loop import parse_tool_calls
    deep = "[" * 50_000 + "]" * 50_000
    calls, bad = parse_tool_calls(f'<tool_call>{{"name": "get_book", "arguments": {deep}}}</tool_call>'
                                  f'<tool_call>{{"name": "get_book", "arguments": "{deep}"}}</tool_call>'
                                  '<tool_call>{"name": "get_book", "arguments": {"book_id": NaN}}</tool_call>')
    assert calls == [] and len(bad) == 3, bad


def test_over_http_odd_json_gets_our_error_and_the_server_stays_up():
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from envfactory.envs.mcp import http_app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(http_app(Environment.load("library")), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url, headers = f"http://127.0.0.1:{port}/mcp/", {"Accept": "application/json, text/event-stream",
                                                      "Content-Type": "application/json"}

    def call(client, n, name, raw_args):
        return client.post(url, headers=headers, content='{"jsonrpc": "2.0", "id": %d, "method": "tools/call", '
                           '"params": {"name": "%s", "arguments": %s}}' % (n, name, raw_args))
    try:
        with httpx.Client(timeout=20) as client:
            init = client.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
            headers["mcp-session-id"] = init.headers["mcp-session-id"]
            client.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            deep = call(client, 2, "search_books", '{"query": ' + "[" * 5000 + "]" * 5000 + "}")
            big = call(client, 3, "get_book", '{"book_id": 99999999999999999999999}')
            surrogate = call(client, 4, "search_books", '{"query": "\\ud800x"}')
            fine = call(client, 5, "get_book", '{"book_id": 1}')
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert deep.status_code == 400 and deep.json()["error"]["code"] == -32700 and "nests too deeply" in deep.text
    assert "integers must lie between" in big.text and '"isError":true' in big.text
    assert "lone surrogate" in surrogate.text and '"isError":true' in surrogate.text
    assert fine.status_code == 200 and '"isError":false' in fine.text
