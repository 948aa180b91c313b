"""Every command answers bad arguments with one line saying what is wrong and exit code 2: no
traceback, no silent fix-up (``--rollouts 0`` used to become 1), no hang (``--port 99999``)."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from envfactory.cli.main import build_parser, main

# (argv, what the one line must say); paths are relative to the test's own folder (see ``here``)
BAD = [
    (["generate", "library", "--n", "-5"], "argument --n: must be 1 or more, got -5"),
    (["generate", "library", "--n", "ten"], "argument --n: must be a whole number, got 'ten'"),
    (["generate", "library", "--concurrency", "0"], "argument --concurrency: must be 1 or more, got 0"),
    (["generate", "library", "--concurrency", "-3"], "argument --concurrency: must be 1 or more, got -3"),
    (["generate", "library", "--max-envs", "0"], "argument --max-envs: must be 1 or more, got 0"),
    (["generate", "library", "--rollouts", "0"], "argument --rollouts: must be 1 or more, got 0"),
    (["generate", "library", "--rollouts", "-2"], "argument --rollouts: must be 1 or more, got -2"),
    (["generate", "library", "--workers", "-1"], "argument --workers: must be 0 or more, got -1"),
    (["generate", "library", "--mode", "bogus"], "argument --mode: invalid choice: 'bogus'"),
    (["generate", "library", "--n", "1", "--store", "notes.txt"], "notes.txt is not a record store"),
    (["generate", "library", "--store", "."], "argument --store: . is a folder"),
    (["generate", "atlantis", "--n", "1"], "'atlantis': is neither a folder nor a bundled environment"),
    (["run", "--n", "-1"], "argument --n: must be 1 or more, got -1"),
    (["run", "--rollouts", "0"], "argument --rollouts: must be 1 or more, got 0"),
    (["run", "--synth-concurrency", "0"], "argument --synth-concurrency: must be 1 or more, got 0"),
    (["export", "--format", "openai", "--store", "notes.txt"], "notes.txt is not a record store"),
    (["export", "--format", "openai", "--store", "missing.sqlite"], "no record store at missing.sqlite"),
    (["export", "--format", "openai", "--out", "notes.txt"], "argument --out: notes.txt is a file"),
    (["export", "--format", "verl", "--val-fraction", "1.5"], "argument --val-fraction: must be at least 0 and below 1"),
    (["export", "--format", "csv"], "argument --format: invalid choice: 'csv'"),
    (["export"], "the following arguments are required: --format"),
    (["envs", "validate", "/etc"], "is a folder but not an environment package (no env.json)"),
    (["envs", "validate", "nosuch"], "'nosuch': is neither a folder nor a bundled environment"),
    (["envs", "validate", "library", "--timeout", "nan"], "argument --timeout: must be a finite number, got 'nan'"),
    (["envs", "validate", "library", "--timeout", "inf"], "argument --timeout: must be a finite number, got 'inf'"),
    (["envs", "validate", "library", "--timeout", "0"], "argument --timeout: must be more than 0, got 0"),
    (["envs", "validate"], "name a package or pass --all"),
    (["envs", "serve", "library", "--port", "99999"], "argument --port: must be a TCP port between 1 and 65535, got 99999"),
    (["envs", "serve", "library", "--port", "0"], "argument --port: must be a TCP port between 1 and 65535, got 0"),
    (["envs", "call", "library", "get_book", "--args", "{oops"], "--args is not valid JSON"),
    (["envs", "call", "nosuch", "get_book"], "'nosuch': is neither a folder nor a bundled environment"),
    (["envs", "import", "missing.py"], "argument path: missing.py does not exist"),
    (["graph", "library", "--out", "notes.txt"], "argument --out: notes.txt is a file"),
    (["sample", "library", "--n", "0"], "argument --n: must be 1 or more, got 0"),
    (["sample", "library", "--max-length", "-1"], "argument --max-length: must be 1 or more, got -1"),
    (["synth", "x", "--concurrency", "0"], "argument --concurrency: must be 1 or more, got 0"),
    (["synth", "x", "--max-rounds", "-1"], "argument --max-rounds: must be 0 or more, got -1"),
    (["synth", "x", "--timeout", "inf"], "argument --timeout: must be a finite number, got 'inf'"),
    (["synth", "--batch", "missing.txt"], "argument --batch: missing.txt does not exist"),
    (["synth"], "give a TARGET or --batch FILE (not both)"),
    (["train-smoke", "--model", "/nonexistent"], "argument --model: /nonexistent does not exist"),
    (["train-smoke", "--tasks-per-env", "0"], "argument --tasks-per-env: must be 1 or more, got 0"),
    (["report", "--limit", "-1"], "argument --limit: must be 0 or more, got -1"),
    (["report", "--out", "notes.txt"], "argument --out: notes.txt is a file"),
    (["report", "--workspace", "notes.txt"], "workspace notes.txt is a file, not a folder"),
    (["report", "--workspace", "nowhere"], "does not exist (run `envfactory run` first"),
    (["prompts", "show", "nosuch/prompt"], "unknown prompt 'nosuch/prompt'"),
    (["prompts", "list", "--dir", "missing"], "argument --dir: missing does not exist"),
    (["bench", "envs", "--rows", "0"], "argument --rows: must be 1 or more, got 0"),
    (["bench", "querygen", "--concurrency", "0"], "argument --concurrency: must be 1 or more, got 0"),
    (["--workspace", "notes.txt", "envs", "list"], "workspace notes.txt is a file, not a folder"),
    (["nosuchcommand"], "argument COMMAND: invalid choice: 'nosuchcommand'"),
]


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a database\n" * 20)
    return tmp_path


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_get_one_line_and_exit_code_2(argv, message, here, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit
        code = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in captured.err + captured.out


def test_every_option_of_every_command_has_help_and_a_default_shown():
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack += list(action.choices.values())
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                assert action.help, f"{p.prog} {action.option_strings or action.dest} has no help"
    help_text = parser._subparsers._group_actions[0].choices["generate"].format_help()
    assert "(default: 10)" in help_text and "(default: single)" in help_text


def test_top_level_help_lists_commands_in_workflow_order_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    text = capsys.readouterr().out
    assert exc.value.code == 0 and "registered below" not in text and "``" not in text
    order = [text.index(f"    {c} ") for c in ("run", "synth", "envs", "graph", "sample", "generate", "export",
                                              "report", "train-smoke", "prompts", "bench")]
    assert order == sorted(order)
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("envfactory 0.")


def test_output_into_a_closed_pipe_ends_quietly():
    """``envfactory prompts list | head -0``: the reader is gone before we write; we stop without a traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "envfactory.cli.main", "prompts", "list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
