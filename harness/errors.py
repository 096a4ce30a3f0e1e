"""The harness's user-facing error types (the shared base: :class:`cmdline.errors.UserError`; data and settings:
:mod:`squad.errors`)."""

from cmdline.errors import UserError
from squad.errors import ConfigError, DatasetError

# The harness's name for the shared base: every error the harness reports as one line.
HarnessError = UserError

__all__ = ["BackendFault", "ConfigError", "DatasetError", "DiskFull", "HarnessError", "ModelError", "RunStopped",
           "UserError"]


class ModelError(UserError):
    """A model is missing, not ONNX, or does not have the expected inputs/outputs."""


class BackendFault(UserError):
    """The inference backend raised during a run; the run is stopped and marked incomplete."""

    exit_status = 3


class DiskFull(UserError):
    """No space left on the device a run writes to; the message names the file that could not be written."""

    exit_status = 6  # 4 is the submission validator's refusal, 5 a run stopped as INVALID


class RunStopped(UserError):
    """A run was stopped on purpose because it could no longer be VALID (``--abort-when-invalid``)."""

    exit_status = 5

    def __init__(self, message: str, *, run_dir: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.run_dir, self.reason = run_dir, reason  # the stopped run's directory and why it could not be VALID
