"""LangChain tools over MCP sessions (langchain-mcp-adapters 0.3.x): ``episode_tools`` binds them to
one episode; ``EpisodeSessionPool`` keeps held in-memory sessions and their converted tools for
rollouts, lending each to one rollout at a time."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from typing import Any, AsyncIterator

from mcp.client.session import ClientSession
from mcp.server.lowlevel import Server

from envfactory.envs.mcp.server import EpisodeRegistry, build_server
from envfactory.envs.mcp.sessions import EpisodeControl, in_memory_session
from envfactory.envs.runtime.environment import Environment, Episode


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


class EpisodeSessionPool:
    """Held in-memory MCP sessions with their LangChain tools for one environment, lent to one
    rollout at a time and pointed at that rollout's own episode.

    Building a server, a client session and the converted tools costs ~5 ms, more than the rest of
    a short rollout's CPU; a pooled session is built once and reused. Isolation is unchanged: while
    lent, the session's server serves exactly the borrower's episode (and nothing in between).
    Bound to the event loop it is first used on; use it from that loop only.
    """

    def __init__(self, env: Environment, max_idle: int = 64, inline_calls: bool = True):
        self.env = env
        self.max_idle = max_idle
        self.inline_calls = inline_calls  # see build_server: False on a loop a blocking-call guard watches
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


