"""``ast.parse`` one thread at a time.

On Python 3.11 the converter from the C syntax tree to ``ast`` objects keeps its recursion depth in
interpreter-wide state. When a garbage collection inside one thread's ``ast.parse`` runs a finalizer
that lets another thread in, and that thread parses too, the depths interleave and the first one
fails with ``SystemError: AST constructor recursion depth mismatch`` (``envfactory synth --batch
--concurrency 4`` lost a target to it). Every ``ast.parse`` of ours goes through this lock.
"""
from __future__ import annotations

import ast
import threading

_parse_lock = threading.RLock()  # re-entrant: a finalizer running inside a parse may parse too


def parse_python(source: str | bytes, filename: str = "<unknown>") -> ast.Module:
    with _parse_lock:
        return ast.parse(source, filename=filename)
