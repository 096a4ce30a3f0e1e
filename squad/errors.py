"""Error types of the shared SQuAD code, for data and settings that carry one clear, user-facing message.

They derive from :class:`cmdline.errors.UserError` (its home: it is every command line's, not SQuAD's; still
importable from here), which both command lines (``obert-harness`` and ``obert-compress``) print without a
traceback: the message must name the file or setting at fault and what was expected.
"""

from cmdline.errors import UserError

__all__ = ["ConfigError", "DatasetError", "UserError"]


class DatasetError(UserError):
    """A dataset or vocabulary file is missing, unreadable or not in the expected format."""


class ConfigError(UserError):
    """A setting (CLI flag, conf file, environment variable) is invalid."""
