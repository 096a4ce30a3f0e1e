"""Error types of the compression pipeline.

They derive from :class:`cmdline.errors.UserError`, so a CLI (``obert-compress`` or ``obert-harness``)
prints their message as one line instead of a traceback. Every message names the file, setting or
parameter at fault and what was expected.
"""

from cmdline.errors import UserError


class CompressionError(UserError):
    """Base class for user-facing errors raised by ``compression``."""


class RecipeError(CompressionError):
    """A recipe file is missing or malformed, or its parameter patterns do not fit the model."""


class OutputExistsError(CompressionError):
    """The output directory already holds files and overwriting was not requested."""


class ExportError(CompressionError):
    """The model could not be exported to ONNX, or the export does not look as expected."""


class VerificationError(CompressionError):
    """An exported model directory failed one or more verification checks."""
