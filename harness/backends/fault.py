"""Test wrappers around a backend: one fails on purpose after N batches, to prove that a backend fault ends a
run cleanly (non-zero exit, logs kept, run marked incomplete) instead of hanging LoadGen; one is slow, to
prove that an overloaded Server run shows its queue and can stop once it cannot be VALID."""

from __future__ import annotations

import threading
import time

import numpy as np

from harness.backends.base import Backend


class InjectedFault(RuntimeError):
    """Raised by :class:`FaultInjectingBackend`."""


class FaultInjectingBackend:
    """Delegates to ``inner`` and raises :class:`InjectedFault` from batch ``fail_after + 1`` on."""

    def __init__(self, inner: Backend, fail_after: int) -> None:
        self.inner = inner
        self.fail_after = fail_after
        self._calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray):
        with self._lock:
            self._calls += 1
            calls = self._calls
        if calls > self.fail_after:
            raise InjectedFault(f"injected fault on batch {calls} (after {self.fail_after} good batches)")
        return self.inner.predict(input_ids, attention_mask, token_type_ids)

    def describe(self) -> dict:
        return {**self.inner.describe(), "injected_fault_after_batches": self.fail_after}


class SlowBackend(FaultInjectingBackend):
    """Delegates to ``inner`` after sleeping ``delay_s`` per batch: an engine too slow for the offered
    load, to exercise what a run does while a queue builds up (tests only)."""

    def __init__(self, inner: Backend, delay_s: float) -> None:
        super().__init__(inner, fail_after=1 << 62)
        self.delay_s = delay_s

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray):
        time.sleep(self.delay_s)
        return self.inner.predict(input_ids, attention_mask, token_type_ids)

    def describe(self) -> dict:
        return {**self.inner.describe(), "injected_delay_s": self.delay_s}
