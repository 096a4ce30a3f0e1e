"""Stopping a training run on SIGINT/SIGTERM at a step boundary, with that step checkpointed, so the same run resumes
there."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


class TrainingStopped(KeyboardInterrupt):
    """Training stopped on SIGINT/SIGTERM after finishing a step and checkpointing it: the same run resumes
    from ``step``."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


class StopOnSignal:
    """SIGINT/SIGTERM (Ctrl-C, schedulers, session ends) during training: finish the step, checkpoint it, then
    stop, so no work since the last periodic checkpoint is lost. A second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        log.warning("%s: finishing this training step and saving a checkpoint, then stopping (again: stop at once)",
                    signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def pass_on(self) -> None:
        """After the handlers are restored: deliver a signal that came but did not stop training (it came in
        the last step), so the program still stops as the signal asked."""
        if self.received is not None:
            signal.raise_signal(self.received)
