"""Everything that touches MCP lives here (mcp 1.x SDK + langchain-mcp-adapters 0.3.x), so a move
to the next SDK generation is one file.

Serving. ``build_server(env)`` makes a low-level MCP server whose tools come from the manifest
(per-parameter descriptions, output schemas, read/write annotations). Every caller gets its own
isolated ``Episode``: by default one per MCP session (a connection, or an ``Mcp-Session-Id`` over
streamable HTTP); a request may name an episode explicitly with ``_meta: {"episode_id": "..."}``,
so several sessions can share one. Episodes close with their session; explicit ones are capped
(least recently used first out).

Control operations (reset, snapshot, restore, state hash, diff) are hidden tools under the
reserved ``_ef_`` prefix: callable over every transport, never listed in ``tools/list``, so an agent
never sees them. Over HTTP they require the server's control token. ``EpisodeControl`` wraps them.

Errors come back as MCP tool errors (``isError: true``) carrying the runtime's precise message.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import inspect
import json
import logging
import secrets
import sys
import threading
import weakref
from typing import Any, AsyncIterator

import anyio
import fastjsonschema
import mcp.types as types
from mcp.client.session import ClientSession
from mcp.server.lowlevel import Server
from mcp.shared.memory import create_connected_server_and_client_session

from .lru import BoundedCache
from .runtime import Environment, Episode
from .state import Snapshot

CONTROL_PREFIX = "_ef_"
CONTROL_TOOLS = ("reset", "state", "diff", "snapshot", "restore")
logging.getLogger("mcp").setLevel(logging.WARNING)  # per-request INFO logs cost more than the call


class _HideControlToolNoise(logging.Filter):
    """The SDK warns that hidden control tools are "not listed"; that is their point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not ("not listed" in record.getMessage() and CONTROL_PREFIX in record.getMessage())


for _name in ("client", "mcp.server.lowlevel.server"):
    logging.getLogger(_name).addFilter(_HideControlToolNoise())


class EpisodeRegistry:
    """Maps MCP sessions and explicit episode ids to episodes."""

    def __init__(self, env: Environment, max_named: int = 1024, pinned: Episode | None = None):
        self.env = env
        self.pinned = pinned  # a single-tenant server (one rollout) serves this episode to every session
        self._by_session: "weakref.WeakKeyDictionary[Any, Episode]" = weakref.WeakKeyDictionary()
        self._named = BoundedCache(max_named, on_evict=lambda episode: episode.close())
        self._owned: dict[int, Episode] = {}   # session episodes this registry closes when their session ends
        self._lock = threading.Lock()  # calls of one session may arrive together, from worker threads

    def for_request(self, session: Any, meta: Any) -> Episode:
        if self.pinned is not None:
            return self.pinned
        episode_id = getattr(meta, "episode_id", None) if meta is not None else None
        if episode_id:
            return self._named.get_or_make(episode_id, lambda: self.env.episode(episode_id=str(episode_id)),
                                           hold_lock=True)
        with self._lock:  # one episode per session, however many of its calls arrive at once
            ep = self._by_session.get(session)
            if ep is None:
                ep = self._by_session[session] = self.env.episode()
                self._owned[id(ep)] = ep
                weakref.finalize(session, self._release, id(ep))
        return ep

    def _release(self, key: int) -> None:
        with self._lock:
            ep = self._owned.pop(key, None)
        if ep is not None:
            ep.close()

    @property
    def live(self) -> int:
        return len(self._owned) + len(self._named)


def _tool_definitions(env: Environment) -> list[types.Tool]:
    tools = []
    for spec in env.tool_specs:
        tools.append(types.Tool(
            name=spec.name, description=spec.description, inputSchema=spec.input_schema,
            outputSchema=spec.output_schema if spec.output_schema.get("type") == "object" else None,
            annotations=types.ToolAnnotations(readOnlyHint=spec.read_only, destructiveHint=not spec.read_only,
                                              idempotentHint=spec.read_only, openWorldHint=False)))
    return tools


def _result(payload: Any, is_error: bool = False) -> types.CallToolResult:
    if is_error:
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(payload))], isError=True)
    text = json.dumps(payload, ensure_ascii=False)
    structured = payload if isinstance(payload, dict) else {"result": payload}
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structuredContent=structured,
                                isError=False)


def build_server(env: Environment, *, control_token: str | None = None, max_named_episodes: int = 1024,
                 episode: Episode | None = None, inline_calls: bool = False) -> Server:
    """An MCP server for ``env``. ``control_token``: required by control operations when set (HTTP).
    ``episode``: serve this one episode to every caller (the caller owns and closes it).
    ``inline_calls``: run calls on the event loop instead of a worker thread (see ``call_tool``)."""
    server: Server = Server(f"envfactory-{env.name}", version=env.manifest.version,
                            instructions=env.manifest.description)
    registry = EpisodeRegistry(env, max_named_episodes, pinned=episode)
    definitions = _tool_definitions(env)
    server.envfactory_registry = registry  # for tests and diagnostics

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return definitions

    def run_call(session: Any, meta: Any, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        episode = registry.for_request(session, meta)
        if name.startswith(CONTROL_PREFIX):
            return _control(episode, name[len(CONTROL_PREFIX):], arguments, control_token)
        result = episode.call(name, arguments)
        return _result(result.output) if result.ok else _result(result.error, is_error=True)

    @server.call_tool(validate_input=False)  # the runtime validates, with messages that name the argument
    async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        # By default SQLite work runs in a worker thread: it never stalls the event loop's other
        # sessions, and asyncio servers that reject blocking calls on the loop (`langgraph dev`
        # runs blockbuster) accept it. The hop costs ~0.1-0.2 ms of CPU per call (thread wake-up,
        # GIL hand-over, loop wake-up), several times the in-memory call itself (~0.05 ms).
        # ``inline_calls`` skips it: right for a private loop whose only job is rollouts against
        # in-memory episodes (a call then delays the loop's other rollouts by its own duration,
        # like any CPU work would), wrong on a server's loop or under blockbuster.
        ctx = server.request_context
        if inline_calls:
            return run_call(ctx.session, ctx.meta, name, arguments or {})
        return await anyio.to_thread.run_sync(run_call, ctx.session, ctx.meta, name, arguments or {})

    return server


def _control(episode: Episode, op: str, args: dict[str, Any], token: str | None) -> types.CallToolResult:
    if token is not None and not secrets.compare_digest(str(args.get("token", "")), token):
        return _result("control operations need the server's control token", is_error=True)
    if op == "reset":
        episode.reset()
        return _result({"episode_id": episode.id, "state_hash": episode.state_hash()})
    if op == "state":
        return _result({"episode_id": episode.id, "state_hash": episode.state_hash(), "calls": len(episode.calls)})
    if op == "diff":
        return _result(json.loads(episode.diff().model_dump_json()))
    if op == "snapshot":
        snap = episode.snapshot()
        dirty = {t: sorted(r) for t, r in snap.dirty.items()} if snap.dirty is not None else None
        return _result({"data": base64.b64encode(snap.data).decode(), "dirty": dirty})
    if op == "restore":
        try:
            dirty = args.get("dirty")
            snap = Snapshot(base64.b64decode(args["data"]), {t: set(r) for t, r in dirty.items()} if dirty is not None else None)
            episode.restore(snap)
        except (KeyError, ValueError) as exc:
            return _result(f"restore needs the 'data' of a snapshot: {exc}", is_error=True)
        return _result({"episode_id": episode.id, "state_hash": episode.state_hash()})
    return _result(f"unknown control operation {op!r}; known: {', '.join(CONTROL_TOOLS)}", is_error=True)


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


@functools.lru_cache(maxsize=1)  # one class, built on first use
def _signature_free_tool_class():
    """``StructuredTool`` whose ``_arun`` awaits the adapter's coroutine directly.

    ``BaseTool.arun`` and ``StructuredTool._arun`` look for ``run_manager``, ``callbacks`` and
    ``RunnableConfig`` parameters with ``inspect.signature`` and ``typing.get_type_hints`` on every
    call (~0.3 ms per call here, the adapter's closure has string annotations to evaluate). The
    adapter's coroutine takes none of them, so this subclass answers with a fixed signature that
    has none: same arguments, same result, same callbacks around the run (``arun`` still opens
    the tool run), none of the per-call introspection.
    """
    from langchain_core.tools import StructuredTool

    class McpStructuredTool(StructuredTool):
        async def _arun(self, *args: Any, **kwargs: Any) -> Any:
            return await self.coroutine(*args, **kwargs)

        @functools.cached_property
        def _injected_args_keys(self) -> frozenset[str]:
            # Read from the coroutine's signature and type hints on each tool's first call (~0.5 ms,
            # times every tool of every pooled session). The adapter makes every coroutine from
            # one ``def``, so the answer is per code object: worked out once per process.
            code = self.coroutine.__code__
            if code not in _injected_keys_by_code:
                _injected_keys_by_code[code] = StructuredTool._injected_args_keys.func(self)
            return _injected_keys_by_code[code]

    McpStructuredTool._arun.__annotations__ = {}  # nothing for get_type_hints to evaluate
    McpStructuredTool._arun.__signature__ = inspect.Signature([  # read by inspect.signature as is
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
        inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
    return McpStructuredTool


_injected_keys_by_code: dict[Any, frozenset[str]] = {}
_plain_coroutine_codes: set[Any] = set()  # coroutines (by code) that take no callbacks, config or run manager


def _without_introspection(tool: Any) -> Any:
    """The adapter's tool as a ``McpStructuredTool`` with the same fields, when it is the plain
    ``StructuredTool`` around a coroutine that takes no callbacks or config (else unchanged)."""
    from langchain_core.tools import StructuredTool
    coroutine = getattr(tool, "coroutine", None)
    if type(tool) is not StructuredTool or coroutine is None or getattr(tool, "func", None) is not None:
        return tool
    code = getattr(coroutine, "__code__", None)
    if code not in _plain_coroutine_codes:  # one signature look per adapter ``def``, not per tool
        params = inspect.signature(coroutine).parameters
        if "callbacks" in params or "config" in params or "run_manager" in params or code is None:
            return tool
        _plain_coroutine_codes.add(code)
    # the fields were validated when the adapter built ``tool``: copied as they are, not again
    return _signature_free_tool_class().model_construct(_fields_set=set(tool.model_fields_set), **dict(tool))


async def load_tools(session: ClientSession) -> list:
    """The session's tools as LangChain tools (langchain-mcp-adapters), built for repeated calls.
    MCP tool errors become error ToolMessages the model can act on (``handle_tool_errors``)."""
    from langchain_mcp_adapters.tools import load_mcp_tools
    return [_without_introspection(t) for t in await load_mcp_tools(session, handle_tool_errors=True)]


@contextlib.asynccontextmanager
async def in_memory_session(env_or_server: Environment | Server) -> AsyncIterator[ClientSession]:
    """A client session connected to a server running as a task on this event loop."""
    from mcp.shared.memory import create_client_server_memory_streams

    server = env_or_server if isinstance(env_or_server, Server) else build_server(env_or_server)
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


class EpisodeSessionPool:
    """Held in-memory MCP sessions with their LangChain tools for one environment, lent to one
    rollout at a time and pointed at that rollout's own episode.

    Building a server, a client session and the converted tools costs ~5 ms, more than the rest of
    a short rollout's CPU; a pooled session is built once and reused. Isolation is unchanged: while
    lent, the session's server serves exactly the borrower's episode (and nothing in between).
    Bound to the event loop it is first used on; use it from that loop only.
    """

    def __init__(self, env: Environment, max_idle: int = 64, inline_calls: bool = False):
        self.env = env
        self.max_idle = max_idle
        self.inline_calls = inline_calls  # see build_server: only for a private rollout loop
        self._idle: list[_HeldSession] = []
        self.opened = 0  # sessions built so far (for tests and diagnostics)

    @contextlib.asynccontextmanager
    async def tools_for(self, episode: Episode) -> AsyncIterator[list]:
        """LangChain tools that act on ``episode`` for the duration of the block."""
        held = self._idle.pop() if self._idle else await self._open()
        held.registry.pinned = episode
        reusable = False
        try:
            yield held.tools
            reusable = True
        finally:
            held.registry.pinned = None
            if reusable and not held.task.done() and len(self._idle) < self.max_idle:
                self._idle.append(held)
            else:  # an interrupted rollout may leave requests in flight: never lend that session again
                await held.close()

    async def _open(self) -> "_HeldSession":
        held = _HeldSession(build_server(self.env, inline_calls=self.inline_calls))
        await held.start()
        self.opened += 1
        return held

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().close()


class _HeldSession:
    """A session kept open by its own task (anyio scopes must close in the task that opened them)."""

    def __init__(self, server: Server):
        self.server = server
        self.registry: EpisodeRegistry = server.envfactory_registry
        self.tools: list = []
        self._stop = asyncio.Event()

    async def start(self) -> None:
        ready: asyncio.Future = asyncio.get_running_loop().create_future()

        async def hold() -> None:
            try:
                async with in_memory_session(self.server) as session:
                    self.tools = await load_tools(session)  # converted once, reused by every borrower
                    ready.set_result(None)
                    await self._stop.wait()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                raise

        self.task = asyncio.get_running_loop().create_task(hold())
        await ready

    async def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(BaseException):
            await self.task


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


@contextlib.asynccontextmanager
async def episode_tools(source: Environment | Server | ClientSession, *,
                        control_token: str | None = None) -> AsyncIterator[tuple[list, EpisodeControl]]:
    """LangChain tools bound to ONE episode (the held session's) for the whole block, plus its
    control handle.

    The adapters open a new session per tool call unless given a held session, and a new session
    would mean a new episode; so the session is held here. MCP tool errors become error
    ToolMessages the model can act on (``handle_tool_errors``), not exceptions.
    """
    async with contextlib.AsyncExitStack() as stack:
        session = source if isinstance(source, ClientSession) else await stack.enter_async_context(in_memory_session(source))
        tools = await load_tools(session)
        yield tools, EpisodeControl(session, token=control_token)


def multi_server_client(connections: dict[str, dict[str, Any]]):
    """A langchain-mcp-adapters client; use ``client.session(name)`` to hold one episode."""
    from langchain_mcp_adapters.client import MultiServerMCPClient
    return MultiServerMCPClient(connections)


# ---------------------------------------------------------------- serving

async def serve_stdio(env: Environment) -> None:
    from mcp.server.stdio import stdio_server
    server = build_server(env)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def http_app(env: Environment, control_token: str | None = None):
    """A Starlette app serving ``env`` over streamable HTTP at ``/mcp`` (stateful sessions)."""
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.routing import Mount

    server = build_server(env, control_token=control_token)
    manager = StreamableHTTPSessionManager(app=server, stateless=False)

    async def handle(scope, receive, send):
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with manager.run():
            yield

    app = Starlette(routes=[Mount("/mcp", app=handle)], lifespan=lifespan)
    app.state.mcp_server = server
    return app


def run_serve_command(args) -> int:
    env = Environment.load(args.env, trust=args.trust)
    if args.transport == "stdio":
        asyncio.run(serve_stdio(env))
        return 0
    import uvicorn
    token = secrets.token_urlsafe(16)
    info = {"url": f"http://{args.host}:{args.port}/mcp", "control_token": token, "env": env.name}
    print(json.dumps(info) if args.json else
          f"serving {env.name} at {info['url']} (control token for _ef_ operations: {token})", file=sys.stderr, flush=True)
    uvicorn.run(http_app(env, control_token=token), host=args.host, port=args.port, log_level="warning")
    return 0


# ---------------------------------------------------------------- baselines for benchmarks

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
