"""Errors of the environment layer.

Two families: ``EnvironmentPackageError`` (a package is broken: the author must fix it) and
``ToolCallError`` (one call was wrong: the agent can act on the message). Messages are written
for the reader who must act, and always name the thing that is wrong.
"""
from __future__ import annotations


class EnvironmentPackageError(ValueError):
    """An environment package cannot be loaded: bad manifest, schema, seed or tool module.
    (A ValueError, like the other errors a caller can act on: a LangGraph server shows its message.)"""

    def __init__(self, package: str, problem: str):
        self.package = package
        self.problem = problem
        super().__init__(f"environment package {package!r}: {problem}")


class UntrustedCodeError(ValueError):
    """In-process loading of code that was neither bundled nor verified was refused."""


class ToolError(Exception):
    """Raised by tool implementations for domain errors ("order 42 does not exist").

    The runtime rolls back the call's writes and returns the message to the agent.
    """


class ToolCallError(Exception):
    """A call that the runtime rejected or that failed; ``kind`` says which family."""

    kind = "error"

    def __init__(self, tool: str, message: str):
        self.tool = tool
        self.message = message
        super().__init__(message)


class UnknownToolError(ToolCallError):
    kind = "unknown_tool"


class InvalidArgumentsError(ToolCallError):
    kind = "invalid_arguments"


class DomainError(ToolCallError):
    kind = "domain"


class ToolCrashError(ToolCallError):
    """The tool's own code raised something other than ToolError: a bug in the environment."""

    kind = "internal"


class ReadOnlyViolationError(ToolCallError):
    """A tool annotated read-only changed the state; its writes were rolled back."""

    kind = "read_only_violation"
