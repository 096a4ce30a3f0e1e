"""Error types that carry one clear, user-facing message.

The CLI catches :class:`HarnessError` and prints its message (no traceback): the message must name the
file or setting at fault and what was expected.
"""


class HarnessError(Exception):
    """Base class for errors reported to the user as a single line."""


class DatasetError(HarnessError):
    """A dataset or vocabulary file is missing, unreadable or not in the expected format."""


class ModelError(HarnessError):
    """A model is missing, not ONNX, or does not have the expected inputs/outputs."""


class ConfigError(HarnessError):
    """A setting (CLI flag, conf file, environment variable) is invalid."""


class BackendFault(HarnessError):
    """The inference backend raised during a run; the run is stopped and marked incomplete."""
