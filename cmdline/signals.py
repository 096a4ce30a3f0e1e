"""SIGTERM (schedulers, ``timeout``, a session's end) as :class:`Terminated`, raised in the main thread like
Ctrl-C's KeyboardInterrupt, so that one path handles both: what finished is kept, child processes are stopped
(:mod:`cmdline.children`), and the command exits with 128 + the signal number.
"""

from __future__ import annotations

import signal

_sigterm_received = False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt so that one path handles both."""


def raise_terminated(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    """The SIGTERM handler: raise :class:`Terminated` (and remember that SIGTERM came, see :func:`is_sigterm`)."""
    global _sigterm_received
    _sigterm_received = True
    raise Terminated()


def install_sigterm_handler():
    """Turn SIGTERM into :class:`Terminated` in the main thread (call from the main thread); returns the
    handler it replaced."""
    return signal.signal(signal.SIGTERM, raise_terminated)


def is_sigterm(interrupt: KeyboardInterrupt) -> bool:
    """SIGTERM ended the command: :class:`Terminated`, or the plain KeyboardInterrupt a library raised in its
    place (Ray's ray.get turns whatever a signal handler raises into KeyboardInterrupt: `timeout` stopping a Ray
    run during its start-up was reported as Ctrl-C, exit 130)."""
    return isinstance(interrupt, Terminated) or (_sigterm_received and type(interrupt) is KeyboardInterrupt)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number."""
    return 128 + (signal.SIGTERM if is_sigterm(interrupt) else signal.SIGINT)
