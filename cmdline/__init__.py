"""What every command line of this repository shares, below all of them (``squad``, ``harness``,
``compression``, ``experiments``); it imports none of them.

- :mod:`cmdline.errors`: :class:`UserError`, the base of every error a command prints as one line.
- :mod:`cmdline.signals`: SIGTERM raised as :class:`Terminated` (a KeyboardInterrupt), so Ctrl-C and SIGTERM
  take one path.
- :mod:`cmdline.children`: running a child process that is stopped with its parent, never left running; the
  tokenizers setting a forked child needs (``settle_tokenizers_parallelism``).
- :mod:`cmdline.provenance`: the command, time, commit and CPU (with its ISA) a generated report carries on top.
"""
