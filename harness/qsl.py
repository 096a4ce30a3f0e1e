"""The LoadGen query sample library over tokenized SQuAD windows.

Features are tokenized (and cached) before the QSL exists, so nothing here is in the timed path:
LoadGen's load callback only records which samples are resident, and the SUT gathers rows of the
pre-built arrays by index.
"""

from __future__ import annotations

import logging

import numpy as np

from harness.errors import ConfigError
from squad.features import FeatureSet

log = logging.getLogger(__name__)


class SquadQSL:
    """A LoadGen QSL handle plus fast batched access to the windows it serves."""

    def __init__(self, features: FeatureSet, performance_count: int | None = None) -> None:
        import mlperf_loadgen as lg

        self.features = features
        self.total_count = len(features)
        if self.total_count == 0:
            raise ConfigError("the QSL would be empty: no features were produced from the dataset")
        if performance_count is not None and performance_count < 1:
            raise ConfigError(f"--performance-count must be >= 1, got {performance_count}")
        # LoadGen holds at most the whole library in memory; a larger request is clamped to it.
        self.performance_count = min(performance_count or self.total_count, self.total_count)
        self.loaded: set[int] = set()
        self.handle = lg.ConstructQSL(
            self.total_count, self.performance_count, self._load_samples, self._unload_samples
        )

    def _load_samples(self, indices: list[int]) -> None:
        self.loaded.update(indices)
        log.debug("QSL: %d samples resident", len(self.loaded))

    def _unload_samples(self, indices: list[int]) -> None:
        self.loaded.difference_update(indices)

    def gather(self, indices: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input ids, attention mask and token type ids of the given samples, ``[n, seq]`` each."""
        f = self.features
        return f.input_ids[indices], f.input_mask[indices], f.segment_ids[indices]

    def seq_lengths(self, indices: np.ndarray | list[int]) -> np.ndarray:
        return self.features.seq_lengths[indices]

    def destroy(self) -> None:
        import mlperf_loadgen as lg

        if self.handle is not None:
            lg.DestroyQSL(self.handle)
            self.handle = None
