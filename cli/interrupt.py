"""Ctrl-C for long commands: the first press asks the run to stop soon (work in flight finishes and is
stored, nothing new starts, a rerun resumes); a second press stops at once."""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

INTERRUPTED_EXIT_CODE = 130  # the shell's code for a command ended by Ctrl-C


@contextlib.contextmanager
def stop_on_ctrl_c(what: str) -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C in the block (only in the main thread, where signals arrive)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"\nstopping: {what} in flight finish and are kept, nothing new starts (Ctrl-C again to quit now)",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
