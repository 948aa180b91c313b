"""envfactory.envs: environment packages and everything that runs them.

Sub-packages, each saying in its own docstring what it owns and what it may import:

- ``runtime``: environments, isolated episodes, state tracking, manifests, trust (the base).
- ``sandbox``: the limited child process untrusted code runs in.
- ``validation``: sandboxed validation, the tests.json runner, the quality bar.
- ``imports``: Python classes imported as packages (the ``pyclass`` backend).
- ``mcp``: MCP servers, client sessions and LangChain tools over them.
- ``skeleton``: the deterministic package generator (EnvGen's offline tier).
- ``chains``: the tool dependency graph and chain sampling.
- ``catalog``: the bundled environment packages (data, not code of ours).

The names below are the public surface most callers need.
"""
import envfactory.envs.imports  # noqa: F401  (registers the pyclass backend with the runtime)
import envfactory.envs.sandbox.remote  # noqa: F401  (registers the sandbox with the runtime)
from envfactory.envs.runtime.environment import Environment, Episode, ToolResult
from envfactory.envs.runtime.errors import (DomainError, EnvironmentPackageError, InvalidArgumentsError,
                                            ReadOnlyViolationError, ToolCallError, ToolCrashError, ToolError,
                                            UnknownToolError, UntrustedCodeError)
from envfactory.envs.runtime.manifest import Manifest, Source, ToolSpec, load_manifest
from envfactory.envs.runtime.packages import CATALOG_DIR, catalog_names, resolve_package
from envfactory.envs.runtime.state import RowChange, Snapshot, StateDiff

__all__ = [
    "CATALOG_DIR", "DomainError", "Environment", "EnvironmentPackageError", "Episode", "InvalidArgumentsError",
    "Manifest", "ReadOnlyViolationError", "RowChange", "Snapshot", "Source", "StateDiff", "ToolCallError",
    "ToolCrashError", "ToolError", "ToolResult", "ToolSpec", "UnknownToolError", "UntrustedCodeError",
    "catalog_names", "load_manifest", "resolve_package",
]
