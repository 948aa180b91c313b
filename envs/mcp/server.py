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
import time
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


class TooManyEpisodes(RuntimeError):
    """The server holds its maximum of episodes; the request is refused (nothing else is closed)."""


class EpisodeRegistry:
    """Maps MCP sessions and explicit episode ids to episodes.

    ``session_scoped`` (HTTP): an explicit episode id names an episode of the session that made it,
    so another client cannot reach it by guessing the id. ``idle_seconds``: named episodes unused that
    long are closed by ``reap_idle`` (session episodes close with their session). ``max_episodes``:
    new episodes beyond it are refused."""

    def __init__(self, env: Environment, max_named: int = 1024, pinned: Episode | None = None, *,
                 session_scoped: bool = False, idle_seconds: float | None = None, max_episodes: int | None = None):
        self.env = env
        self.pinned = pinned  # a single-tenant server (one rollout) serves this episode to every session
        self.session_scoped = session_scoped
        self.idle_seconds = idle_seconds
        self.max_episodes = max_episodes
        self._by_session: "weakref.WeakKeyDictionary[Any, Episode]" = weakref.WeakKeyDictionary()
        self._session_keys: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
        self._named = BoundedCache(max_named, on_evict=lambda episode: episode.close())
        self._used: dict[Any, float] = {}      # named key -> when it was last used
        self._owned: dict[int, Episode] = {}   # session episodes this registry closes when their session ends
        self._lock = threading.Lock()  # calls of one session may arrive together, from worker threads

    def _check_room(self) -> None:
        if self.max_episodes is not None and self.live >= self.max_episodes:
            raise TooManyEpisodes(f"this server holds its maximum of {self.max_episodes} episodes; "
                                  "close a session or wait for idle episodes to be reaped")

    def for_request(self, session: Any, meta: Any) -> Episode:
        if self.pinned is not None:
            return self.pinned
        episode_id = getattr(meta, "episode_id", None) if meta is not None else None
        if episode_id:
            key: Any = str(episode_id)
            if self.session_scoped:
                with self._lock:
                    owner = self._session_keys.get(session)
                    if owner is None:
                        owner = self._session_keys[session] = secrets.token_hex(8)
                key = (owner, str(episode_id))
            if key not in self._named:
                self._check_room()
            self._used[key] = time.monotonic()
            return self._named.get_or_make(key, lambda: self.env.episode(episode_id=str(episode_id)), hold_lock=True)
        with self._lock:  # one episode per session, however many of its calls arrive at once
            ep = self._by_session.get(session)
            if ep is None:
                self._check_room()
                ep = self._by_session[session] = self.env.episode()
                self._owned[id(ep)] = ep
                weakref.finalize(session, self._release, id(ep))
        return ep

    def reap_idle(self, now: float | None = None) -> int:
        """Close named episodes unused for ``idle_seconds``; how many were closed."""
        if self.idle_seconds is None:
            return 0
        now = time.monotonic() if now is None else now
        closed = 0
        for key in self._named.keys():
            if now - self._used.get(key, now) > self.idle_seconds:
                ep = self._named.pop(key)
                self._used.pop(key, None)
                if ep is not None:
                    ep.close()
                    closed += 1
        return closed

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
                 episode: Episode | None = None, inline_calls: bool = False, session_scoped: bool = False,
                 idle_seconds: float | None = None, max_episodes: int | None = None) -> Server:
    """An MCP server for ``env``. ``control_token``: required by control operations when set (HTTP).
    ``episode``: serve this one episode to every caller (the caller owns and closes it).
    ``inline_calls``: run calls on the event loop instead of a worker thread (see ``call_tool``)."""
    server: Server = Server(f"envfactory-{env.name}", version=env.manifest.version,
                            instructions=env.manifest.description)
    registry = EpisodeRegistry(env, max_named_episodes, pinned=episode, session_scoped=session_scoped,
                               idle_seconds=idle_seconds, max_episodes=max_episodes)
    definitions = _tool_definitions(env)
    server.envfactory_registry = registry  # for tests and diagnostics

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return definitions

    def run_call(session: Any, meta: Any, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        try:
            episode = registry.for_request(session, meta)
        except TooManyEpisodes as exc:
            return _result(str(exc), is_error=True)
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


def http_app(env: Environment, control_token: str | None = None, *, host: str = "127.0.0.1", port: int = 8765,
             allowed_origins: list[str] | None = None, idle_seconds: float = 1800.0, max_episodes: int = 1024):
    """A Starlette app serving ``env`` over streamable HTTP at ``/mcp`` (stateful sessions).

    Hardened for a server a browser can reach: the Host header must name this server and an Origin,
    when sent, must be one of ``allowed_origins`` (else 421/403: no DNS rebinding); explicit episode ids
    are scoped to the session that made them; sessions and named episodes idle for ``idle_seconds``
    are closed; at most ``max_episodes`` episodes live at once."""
    import inspect

    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette
    from starlette.routing import Mount

    server = build_server(env, control_token=control_token, session_scoped=True, idle_seconds=idle_seconds,
                          max_episodes=max_episodes, max_named_episodes=max_episodes)
    names = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost", "0.0.0.0", "::") else {host}
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted({f"{n}:{port}" for n in names} | {f"{n}:*" for n in names}),
        allowed_origins=list(allowed_origins or []) + [f"http://{n}:{port}" for n in sorted(names)])
    options: dict[str, Any] = {"security_settings": security}
    accepted = inspect.signature(StreamableHTTPSessionManager).parameters
    if "session_idle_timeout" in accepted:  # the SDK reaps idle sessions (and their episodes with them)
        options["session_idle_timeout"] = idle_seconds
    if "max_sessions" in accepted:
        options["max_sessions"] = max_episodes
    manager = StreamableHTTPSessionManager(app=server, stateless=False, **options)
    registry = server.envfactory_registry

    async def handle(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            receive = await _refuse_deep_json(scope, receive, send)
            if receive is None:
                return
        await manager.handle_request(scope, receive, send)

    async def reaper() -> None:
        while True:
            await anyio.sleep(max(1.0, min(idle_seconds / 4, 60.0)))
            await anyio.to_thread.run_sync(registry.reap_idle)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with manager.run(), anyio.create_task_group() as tasks:
            tasks.start_soon(reaper)
            yield
            tasks.cancel_scope.cancel()

    app = Starlette(routes=[Mount("/mcp", app=handle)], lifespan=lifespan)
    app.state.mcp_server = server
    return app


def run_serve_command(args) -> int:
    env = Environment.load(args.env, trust=True) if args.trust else Environment.open(args.env)
    if args.transport == "stdio":
        asyncio.run(serve_stdio(env))
        return 0
    import uvicorn
    token = secrets.token_urlsafe(16)
    info = {"url": f"http://{args.host}:{args.port}/mcp", "control_token": token, "env": env.name}
    print(json.dumps(info) if args.json else
          f"serving {env.name} at {info['url']} (control token for _ef_ operations: {token})", file=sys.stderr, flush=True)
    app = http_app(env, control_token=token, host=args.host, port=args.port,
                   allowed_origins=getattr(args, "allow_origin", None) or [],
                   idle_seconds=getattr(args, "idle_seconds", 1800.0), max_episodes=getattr(args, "max_episodes", 1024))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


