"""Ctrl-C and SIGTERM end a command the same clean way: the run in progress is marked interrupted, then the
process exits with 130 (SIGINT) or 143 (SIGTERM, what ``timeout`` and batch schedulers send).

The exit must skip the interpreter's normal shutdown: LoadGen's C++ threads are still running when a run
is interrupted (LoadGen has no abort call), and destroying them at shutdown aborts the process
("terminate called without an active exception", exit 134). So the command line ends with ``os._exit``
once everything worth keeping is on disk.
"""

from __future__ import annotations

import os
import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt so that one path handles both."""


def install_sigterm_handler() -> None:
    """Turn SIGTERM into :class:`Terminated` in the main thread (call from the main thread)."""

    def _raise_terminated(signum, frame):  # noqa: ARG001 - signal handler signature
        raise Terminated()

    signal.signal(signal.SIGTERM, _raise_terminated)


def describe(interrupt: KeyboardInterrupt) -> str:
    """What ended the command, for run records and messages."""
    return "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted by the user (Ctrl-C)"


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


def exit_now(status: int) -> None:
    """Flush what was printed and leave without the interpreter's shutdown (see the module docstring)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
