"""Child processes: one stopped with its parent instead of being left running, and what a forked one inherits.

Ctrl-C reaches the child too (same process group); SIGTERM reaches only the parent (raised there as
:class:`cmdline.signals.Terminated`), so it is passed on. Either way the child is given ``stop_grace_s`` to
finish what it is writing (a harness run marks itself interrupted) and exit; only then is it killed. The
interrupt is raised again once the child is gone (and reaped).
"""

from __future__ import annotations

import os
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


TOKENIZERS_PARALLELISM = "TOKENIZERS_PARALLELISM"


def settle_tokenizers_parallelism() -> None:
    """Declare the Hugging Face tokenizers library's parallelism before this process forks, so that nothing is printed.

    Undeclared, the library warns in every process forked after it has tokenized in parallel ("The current process
    just got forked, after parallelism has already been used"), and ``import openvino`` forks one to send its
    telemetry. Declared as the library's own default: parallel in this process and in those started afresh
    (subprocesses, Ray workers); serial in a forked child, which has none of this process's threads, as the library
    itself makes it after its warning. A value set by the user is kept. Call it at the start of every command."""
    if TOKENIZERS_PARALLELISM in os.environ:
        return
    os.environ[TOKENIZERS_PARALLELISM] = "true"
    os.register_at_fork(after_in_child=_tokenize_serially)


def _tokenize_serially() -> None:
    os.environ[TOKENIZERS_PARALLELISM] = "false"
