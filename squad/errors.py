"""Error types that carry one clear, user-facing message.

Both command lines (``obert-harness`` and ``obert-compress``) catch :class:`UserError` and print its
message without a traceback: the message must name the file or setting at fault and what was expected.
"""


class UserError(Exception):
    """Base class for errors reported to the user as a single line."""

    exit_status = 1  # what the command line exits with


class DatasetError(UserError):
    """A dataset or vocabulary file is missing, unreadable or not in the expected format."""


class ConfigError(UserError):
    """A setting (CLI flag, conf file, environment variable) is invalid."""
