"""The base of every user-facing error.

The command lines (``obert-harness``, ``obert-compress``, ``python -m experiments``) catch :class:`UserError`
and print its message without a traceback: the message must name the file or setting at fault and what was
expected. Each package derives its own kinds (:mod:`squad.errors`, :mod:`harness.errors`,
:mod:`compression.errors`).
"""


class UserError(Exception):
    """Base class for errors reported to the user as a single line."""

    exit_status = 1  # what the command line exits with
