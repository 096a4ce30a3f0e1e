"""A same-box imitation of the published harness's design, to measure ours against it on one model.

The published oBERT-MobileBERT result (928.6 samples/s Offline on two Xeon 8380) padded every window
to 384 tokens, ran Offline as a plain loop over fixed-size batches inside LoadGen's issue callback,
and answered Server queries one sample at a time, synchronously, on LoadGen's issue thread. These SUTs
do exactly that over the same backend, QSL and response encoding as ours, so the difference measured is
the design: length bucketing, a worker pool, and dynamic batching within the latency budget.
"""

from __future__ import annotations

import time

from harness.backends import Backend
from harness.errors import ConfigError
from harness.qsl import SquadQSL
from harness.scenarios import SutOptions, SystemUnderTest


class _PublishedDesign(SystemUnderTest):
    def __init__(self, backend: Backend, qsl: SquadQSL, options: SutOptions) -> None:
        if backend.sequence_buckets:
            raise ConfigError(f"{type(self).__name__} pads every window to full length: build its backend "
                              "without length bucketing")
        super().__init__(backend, qsl, options)


class PublishedOfflineSut(_PublishedDesign):
    """Offline: fixed-size batches in issue order, run one after another in the issue callback."""

    scenario = "Offline"

    def _issue_queries(self, samples: list) -> None:
        self.issued += len(samples)
        batch_size = self.backend.batch_size
        for start in range(0, len(samples), batch_size):
            self.run_batch(samples[start : start + batch_size])


class PublishedServerSut(_PublishedDesign):
    """Server: each query is run at once, alone, on LoadGen's issue thread (no queue, no batching)."""

    scenario = "Server"

    def _issue_queries(self, samples: list) -> None:
        self.issued += len(samples)
        arrived = time.monotonic()
        for sample in samples:
            self.run_batch([sample], [arrived])


DESIGNS: dict[str, type[SystemUnderTest] | None] = {
    "ours": None,  # the scenario's own SUT (harness.scenarios)
    "published-offline": PublishedOfflineSut,
    "published-server": PublishedServerSut,
}
