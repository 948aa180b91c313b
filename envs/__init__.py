"""envfactory.envs: the environment runtime (packages, isolated episodes, MCP serving,
sandboxed validation) and the bundled catalog."""
from .errors import (DomainError, EnvironmentPackageError, InvalidArgumentsError, ReadOnlyViolationError,
                     ToolCallError, ToolCrashError, ToolError, UnknownToolError, UntrustedCodeError)
from .manifest import Manifest, Source, ToolSpec, load_manifest
from .runtime import CATALOG_DIR, Environment, Episode, ToolResult, catalog_names, resolve_package
from .state import RowChange, Snapshot, StateDiff

__all__ = [
    "CATALOG_DIR", "DomainError", "Environment", "EnvironmentPackageError", "Episode", "InvalidArgumentsError",
    "Manifest", "ReadOnlyViolationError", "RowChange", "Snapshot", "Source", "StateDiff", "ToolCallError",
    "ToolCrashError", "ToolError", "ToolResult", "ToolSpec", "UnknownToolError", "UntrustedCodeError",
    "catalog_names", "load_manifest", "resolve_package",
]
