"""Ctrl-C and SIGTERM end a command the same clean way: the run in progress is marked interrupted, then the
process exits with 130 (SIGINT) or 143 (SIGTERM, what ``timeout`` and batch schedulers send).

The exit must skip the interpreter's normal shutdown: LoadGen's C++ threads are still running when a run
is interrupted (LoadGen has no abort call), and destroying them at shutdown aborts the process
("terminate called without an active exception", exit 134). So the command line ends with ``os._exit``
once everything worth keeping is on disk.

SIGTERM as :class:`Terminated`, shared with the other command lines, is :mod:`cmdline.signals`'s.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from cmdline.signals import Terminated, exit_status, install_sigterm_handler, is_sigterm

__all__ = ["STOPPING_NOTICE", "Terminated", "describe", "exit_now", "exit_status", "install_sigterm_handler",
           "install_stop_notice", "is_sigterm"]

# Said the moment a signal arrives (see install_stop_notice); a second Ctrl-C quits at once.
STOPPING_NOTICE = {
    signal.SIGINT: "Ctrl-C: stopping. What cannot be cut short finishes first (an engine being compiled: up to a "
                   "minute), then the run in progress is recorded as interrupted; Ctrl-C again quits at once",
    signal.SIGTERM: "SIGTERM: stopping; the run in progress is recorded as terminated",
}


_stop_notice_installed = False


def install_stop_notice() -> None:
    """Say at once that the command is stopping when Ctrl-C or SIGTERM arrives (call from the main thread).

    Python raises KeyboardInterrupt only when the main thread runs Python code again: while it waits for an
    engine compile (a C call, or a thread pool that cannot cancel a running compile) nothing was said for
    40 s. The interpreter's C-level handler writes each signal's number to a wakeup pipe immediately; a thread
    reading that pipe prints the notice, and on a second Ctrl-C ends the process (exit 130) without waiting."""
    global _stop_notice_installed
    if _stop_notice_installed:  # commands called again in one process (tests)
        return
    _stop_notice_installed = True
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        interrupts = 0
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            for signum in data:
                if signum == signal.SIGINT:
                    interrupts += 1
                    if interrupts > 1:
                        print("Ctrl-C again: quitting now", file=sys.stderr, flush=True)
                        exit_now(128 + signal.SIGINT)
                if signum in STOPPING_NOTICE and (signum != signal.SIGINT or interrupts == 1):
                    print(STOPPING_NOTICE[signum], file=sys.stderr, flush=True)

    threading.Thread(target=watch, name="stop-notice", daemon=True).start()


def describe(interrupt: KeyboardInterrupt) -> str:
    """What ended the command, for run records and messages."""
    return "terminated (SIGTERM)" if is_sigterm(interrupt) else "interrupted by the user (Ctrl-C)"


def exit_now(status: int) -> None:
    """Flush what was printed and leave without the interpreter's shutdown (see the module docstring)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def run_child_main(main) -> None:
    """The ``python -m`` entry of a harness child process: SIGTERM as Ctrl-C, ``main(argv)``'s status as the exit
    status, an interrupted run's own status (the run is already marked interrupted)."""
    install_sigterm_handler()
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt as interrupt:
        print(describe(interrupt), file=sys.stderr)
        exit_now(exit_status(interrupt))
