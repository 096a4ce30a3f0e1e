"""A child process stopped with its parent instead of being left running.

Ctrl-C reaches the child too (same process group); SIGTERM reaches only the parent (raised there as
:class:`cmdline.signals.Terminated`), so it is passed on. Either way the child is given ``stop_grace_s`` to
finish what it is writing (a harness run marks itself interrupted) and exit; only then is it killed. The
interrupt is raised again once the child is gone (and reaped).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence

from cmdline.signals import is_sigterm


def run_child(command: Sequence[str], *, stop_grace_s: float, env: Mapping[str, str] | None = None,
              capture_output: bool = False) -> subprocess.CompletedProcess:
    """Run ``command`` to its end and return its exit status (and its stdout/stderr as text with
    ``capture_output``; otherwise they are this process's)."""
    pipe = subprocess.PIPE if capture_output else None
    child = subprocess.Popen(list(command), stdout=pipe, stderr=pipe, text=capture_output, env=env)
    try:
        stdout, stderr = child.communicate()
    except KeyboardInterrupt as interrupt:
        if is_sigterm(interrupt):
            child.send_signal(signal.SIGTERM)
        try:
            child.communicate(timeout=stop_grace_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
        raise
    return subprocess.CompletedProcess(list(command), child.returncode, stdout, stderr)
