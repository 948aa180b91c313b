"""The ``envfactory`` command: one sub-command group per module, registered below."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes ``register(subparsers)``; adding a group means adding a line here.
COMMAND_MODULES = [
    "envfactory.cli.envs_cmd",
    "envfactory.cli.run_cmd",
    "envfactory.cli.bench_cmd",
    "envfactory.cli.prompts_cmd",
    "envfactory.cli.graph_cmd",
    "envfactory.cli.generate_cmd",
    "envfactory.cli.export_cmd",
    "envfactory.cli.synth_cmd",
    "envfactory.cli.train_cmd",
    "envfactory.cli.report_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="envfactory", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a group still being built must not break the others
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from envfactory.envs.runtime.errors import EnvironmentPackageError, UntrustedCodeError
    try:
        return int(args.handler(args) or 0)
    except (EnvironmentPackageError, UntrustedCodeError, FileNotFoundError) as exc:
        print(f"envfactory: {exc}", file=sys.stderr)  # a clear message, not a traceback
        return 2


if __name__ == "__main__":
    sys.exit(main())
