"""The ``envfactory`` command: one sub-command group per module, registered below in workflow order."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

# Each module exposes ``register(subparsers)``; adding a group means adding a line here.
COMMAND_MODULES = [
    "envfactory.cli.run_cmd",
    "envfactory.cli.synth_cmd",
    "envfactory.cli.envs_cmd",
    "envfactory.cli.graph_cmd",
    "envfactory.cli.generate_cmd",
    "envfactory.cli.export_cmd",
    "envfactory.cli.report_cmd",
    "envfactory.cli.train_cmd",
    "envfactory.cli.prompts_cmd",
    "envfactory.cli.bench_cmd",
]

DESCRIPTION = ("envfactory: synthesize verified tool environments, generate verified tool-use trajectories in "
               "them, and export them for SFT and RL. Everything a command makes goes into one workspace, "
               "where the next command finds it.")

WORKSPACE_HELP = ("the workspace folder: catalog, record store, exports (default: $ENVFACTORY_WORKSPACE, else the "
                  "nearest folder from here upward holding envfactory.toml, else ./out)")


def _leaf_parsers(parser: argparse.ArgumentParser):
    """Every parser under ``parser`` that runs a command (sub-command groups included)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield child
                yield from _leaf_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    from envfactory.cli.arguments import Parser, fill_help
    parser = Parser(prog="envfactory", description=DESCRIPTION)
    parser.add_argument("--workspace", metavar="DIR", default=argparse.SUPPRESS, help=WORKSPACE_HELP)
    parser.add_argument("--version", action="version", version=f"envfactory {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a group still being built must not break the others
            if exc.name != name:
                raise
            continue
        module.register(sub)
    for child in _leaf_parsers(parser):  # --workspace before or after the sub-command
        if "--workspace" not in child._option_string_actions:
            child.add_argument("--workspace", metavar="DIR", default=argparse.SUPPRESS, help=WORKSPACE_HELP)
        fill_help(child)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("envfactory")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


@contextlib.contextmanager
def _workspace_env(folder: str | None):
    """--workspace for this command: set as ENVFACTORY_WORKSPACE (worker processes and subprocesses
    inherit it), restored afterwards so in-process callers (tests, notebooks) are left as they were."""
    from envfactory.envs.runtime.workspace import WORKSPACE_VAR, Workspace
    if folder is None:
        yield
        return
    previous = os.environ.get(WORKSPACE_VAR)
    os.environ[WORKSPACE_VAR] = str(Workspace.at(folder).root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(WORKSPACE_VAR, None)
        else:
            os.environ[WORKSPACE_VAR] = previous


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``envfactory ... | head``): what it wanted was printed."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not raise again
    except (OSError, ValueError):
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from envfactory.envs.runtime.errors import EnvironmentPackageError, UntrustedCodeError
    from envfactory.data.store import StoreError
    from envfactory.envs.runtime.workspace import WorkspaceError
    try:
        with _workspace_env(getattr(args, "workspace", None)):
            code = int(args.handler(args) or 0)
            sys.stdout.flush()  # a closed pipe raises here, inside this try, not at interpreter exit
            return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (EnvironmentPackageError, UntrustedCodeError, FileNotFoundError, WorkspaceError, StoreError) as exc:
        print(f"envfactory: {exc}", file=sys.stderr)  # a clear message, not a traceback
        return 2


if __name__ == "__main__":
    sys.exit(main())
