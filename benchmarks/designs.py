"""Same-box imitations of the published harness designs, to measure ours against them on one model.

v2.1 (the published oBERT-MobileBERT result) padded every window to 384 tokens, ran Offline as a plain loop over
fixed-size batches inside LoadGen's issue callback, and answered Server queries one sample at a time,
synchronously, on LoadGen's issue thread.

v3.0 (Neural Magic's next submission) bucketed sequence lengths: one engine per bucket (64/128/192/256/384),
each with DeepSparse's single_stream scheduler (one stream over every core) at a large batch; in the issue
callback, the samples are grouped by bucket and run bucket after bucket in fixed-size batches, a short last
batch padded to the engine's batch size.

These SUTs do exactly that over the same backend, QSL and response encoding as ours, so what differs is the
design: bucket set, streams x batch, and the worker pool / dynamic batching. The published figures of both
designs are in docs/performance.md.
"""

from __future__ import annotations

import time

from harness.backends import Backend
from harness.bucketing import bucket_batches
from harness.errors import ConfigError
from harness.qsl import SquadQSL
from harness.scenarios import SutOptions, SystemUnderTest


# The v3.0 configuration (its bucket set and batch; one stream per engine).
V3_BUCKETS = (64, 128, 192, 256, 384)
V3_BATCH_SIZE = 64


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


class PublishedV3OfflineSut(SystemUnderTest):
    """v3.0 Offline: per bucket, fixed-size batches run one after another in the issue callback."""

    scenario = "Offline"

    def __init__(self, backend: Backend, qsl: SquadQSL, options: SutOptions) -> None:
        if not backend.sequence_buckets:
            raise ConfigError("PublishedV3OfflineSut runs one engine per length bucket: build its backend with "
                              f"buckets (v3.0 used {','.join(map(str, V3_BUCKETS))})")
        super().__init__(backend, qsl, options)

    def _issue_queries(self, samples: list) -> None:
        self.issued += len(samples)
        lengths = self.qsl.seq_lengths([s.index for s in samples])
        # Bucket after bucket, in issue order within a bucket; the backend pads a short batch to its size.
        for batch in bucket_batches(samples, lengths, self.backend.sequence_buckets, self.backend.batch_size):
            self.run_batch(batch)


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
    "published-v3-offline": PublishedV3OfflineSut,
}
