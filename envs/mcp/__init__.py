"""MCP serving and clients (mcp 1.x SDK + langchain-mcp-adapters 0.3.x): everything that touches MCP
lives in this sub-package, so a move to the next SDK generation stays here.

- ``server``: a low-level MCP server per environment (one episode per session or named episode,
  hidden ``_ef_`` control operations), stdio and streamable-HTTP serving.
- ``sessions``: client sessions onto those servers (in memory, stdio, HTTP) and ``EpisodeControl``.
- ``tools``: LangChain tools bound to one episode, and the pooled sessions rollouts borrow.
- ``direct``: the same LangChain tools calling an in-process episode without MCP (trusted rollouts).

May import ``envfactory.envs.runtime``; nothing else in ``envs`` imports MCP.
"""
from envfactory.envs.mcp.server import build_server, http_app, run_serve_command, serve_stdio
from envfactory.envs.mcp.sessions import (EpisodeControl, ValidatingClientSession, http_session, in_memory_session,
                                          multi_server_client, stdio_session)
from envfactory.envs.mcp.direct import DirectToolPool
from envfactory.envs.mcp.tools import EpisodeSessionPool, episode_tools, load_tools

__all__ = ["DirectToolPool", "EpisodeControl", "EpisodeSessionPool", "ValidatingClientSession", "build_server", "episode_tools",
           "http_app", "http_session", "in_memory_session", "load_tools", "multi_server_client", "run_serve_command",
           "serve_stdio", "stdio_session"]
