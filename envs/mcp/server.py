"""Serving an environment over MCP (mcp 1.x SDK).

 ``build_server(env)`` makes a low-level MCP server whose tools come from the manifest
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
import json
import logging
import secrets
import sys
import threading
import weakref
from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server

from envfactory.envs.runtime.environment import Environment, Episode
from envfactory.envs.runtime.lru import BoundedCache
from envfactory.envs.runtime.state import Snapshot

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
        if not isinstance(args.get("data"), str):
            return _result("restore needs the 'data' of a snapshot (base64 text, as _ef_snapshot returns it)", is_error=True)
        dirty = args.get("dirty")
        if dirty is not None and not (isinstance(dirty, dict) and all(isinstance(r, list) for r in dirty.values())):
            return _result("restore refused: 'dirty' must map table names to lists of row ids; the episode is unchanged",
                           is_error=True)
        try:
            data = base64.b64decode(args["data"], validate=True)
            episode.restore(Snapshot(data, {t: set(r) for t, r in dirty.items()} if dirty is not None else None))
        except (ValueError, TypeError) as exc:  # not base64, not a snapshot of this environment
            return _result(f"restore refused, the episode is unchanged: {exc}", is_error=True)
        return _result({"episode_id": episode.id, "state_hash": episode.state_hash()})
    return _result(f"unknown control operation {op!r}; known: {', '.join(CONTROL_TOOLS)}", is_error=True)


async def _refuse_deep_json(scope, receive, send):
    """The SDK parses a POST body with ``json.loads``, whose RecursionError on a body nested thousands
    deep became a 500 and a logged traceback. Such a body gets a JSON-RPC parse error here instead;
    any other body is handed on unchanged (the returned ``receive`` replays it)."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None if message["type"] == "http.disconnect" else receive
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    try:
        json.loads(body)
    except RecursionError:
        from starlette.responses import JSONResponse
        error = {"jsonrpc": "2.0", "id": None,
                 "error": {"code": -32700, "message": "Parse error: the request nests too deeply"}}
        await JSONResponse(error, status_code=400)(scope, receive, send)
        return None
    except ValueError:
        pass  # not JSON: the SDK answers with its own parse error
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


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
        if scope["type"] == "http" and scope["method"] == "POST":
            receive = await _refuse_deep_json(scope, receive, send)
            if receive is None:
                return
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


