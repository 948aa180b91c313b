"""Argument types and the parser class of the ``envfactory`` command: a bad argument is one line
saying what is wrong and exit code 2, never a traceback or a silent fix-up."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """Help shows every option's default; an error is one line (usage is one ``--help`` away)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A share in [0, 1)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port between 1 and 65535, got {value}")
    return value


def existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder" if Path(text).exists() else f"{text} does not exist")
    return text


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file" if Path(text).exists() else f"{text} does not exist")
    return text


def output_dir(text: str) -> str:
    """A folder to write into: new or existing, never an existing file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder to write into")
    return text


def store_file(text: str) -> str:
    """A record store path: a file (new or existing), never a folder."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the record store's .sqlite file")
    return text


# help for options that are the same in every command (every option gets a line in --help)
COMMON_HELP = {
    "json": "print the result as JSON",
    "seed": "random seed: the same seed gives the same output",
    "trust": "run an unverified package's code in this process",
    "mode": "single-shot tasks, or conversations with a simulated user",
    "rollouts": "rollouts per task (pass@k; the pass rate labels difficulty)",
    "concurrency": "how many run at once",
    "dir": "your own template folder (repeatable)",
    "ref": "a template: ID or ID@VERSION",
}


def fill_help(parser: argparse.ArgumentParser) -> list[str]:
    """Give options without help their common line; returns the ones that still have none."""
    missing = []
    for action in parser._actions:
        if action.help is None and not isinstance(action, argparse._SubParsersAction):
            action.help = COMMON_HELP.get(action.dest)
            if action.help is None:
                missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    return missing


def print_error(message: str) -> None:
    print(f"envfactory: {message}", file=sys.stderr)
