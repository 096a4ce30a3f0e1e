"""What the benchmark suite measures: its sections, the settings of their jobs (loads, batches, streams, lengths)
and the models they run. The command line sets a few of them; tests shrink the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.designs import V3_BATCH_SIZE, V3_BUCKETS
from benchmarks.jobs import TuneConfig
from harness.bucketing import DEFAULT_BUCKETS
from harness.models import ModelInfo
from harness.engine_settings import DEFAULT_BATCH_SIZE, DEFAULT_STREAMS

SECTIONS = ("offline", "peers", "server", "buckets", "tune", "vnni", "ray", "engines", "hosts")


@dataclass
class SuiteConfig:
    samples: int = 512  # features per Offline throughput measurement (the first N of the dev set)
    offline_batch: int = DEFAULT_BATCH_SIZE["Offline"]  # ours
    reference_batch: int = 16  # the padded/published-design job and the peers (one stream each)
    v3_buckets: tuple[int, ...] = V3_BUCKETS  # the v3.0-design job (one stream, one engine per bucket)
    v3_batch: int = V3_BATCH_SIZE
    server_batch: int = DEFAULT_BATCH_SIZE["Server"]
    server_timeout_ms: float = 10.0
    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    # Loads to try: they bracket where p99 crosses the 130 ms bound on a small machine, where one long window
    # alone takes a large share of the budget (the valid region is at low utilisation).
    server_fractions: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)  # of our Offline samples/s
    published_server_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)  # of its batch-1 capacity
    server_duration_ms: int = 30000
    # Engine streams. The defaults are the harness's; the other configurations listed are measured alongside
    # (Offline (streams, batch) over the first N and all features, for speed and peak memory; Server streams
    # at ``other_streams_server_fractions``), so the choice of default rests on figures of the same run.
    offline_streams: int = DEFAULT_STREAMS["Offline"]
    server_streams: int = DEFAULT_STREAMS["Server"]
    other_offline_configs: tuple[tuple[int, int], ...] = ((1, 16),)  # (streams, batch)
    other_server_streams: tuple[int, ...] = (2,)
    other_server_policies: tuple[str, ...] = ("slack",)  # the default is aging (harness.scenarios.ServerSut)
    other_streams_server_fractions: tuple[float, ...] = (0.15, 0.25, 0.35)
    singlestream_duration_ms: int = 60000  # a SingleStream run: its 90th-percentile latency sets user.conf
    service_profile_count: int = 40  # windows per bucket timed alone: service times for the queueing bound
    full_offline: bool = True  # Offline over every feature: headline samples/s and peak RSS
    sections: tuple[str, ...] = ("offline", "peers", "server", "tune")  # of SECTIONS; the rest may be reused
    # Section "buckets": an engine at each length and each batch (with the Offline default streams), timed
    # in a bare loop over ``bucket_windows`` windows; every bucket set drawn from these lengths is then
    # ranked with each bucket at its own fastest batch (projections.bucket_plans).
    bucket_lengths: tuple[int, ...] = (64, 128, 192, 256, 320, 384)
    bucket_batches: tuple[int, ...] = (8, 16)
    bucket_windows: int = 768
    # Section "ray": as many one-CPU nodes as this machine has cores, one one-core worker each, against the
    # headline local job on the same cores.
    ray_nodes: int = 2
    ray_server_fractions: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3)  # of the local Offline samples/s
    # Section "engines": each engine's Server sweep at these fractions of its own Offline samples/s; OpenVINO's
    # sparse-weights job at this rate (the weight sparsity from which it decompresses sparse weights; the 4-block
    # matrices hold 50% zeros).
    engine_server_fractions: tuple[float, ...] = (0.15, 0.25, 0.35, 0.45, 0.55)
    # ... with the tokens policy (its batches grow with the load: it holds VALID loads nearer Offline's)
    engine_token_server_fractions: tuple[float, ...] = (0.45, 0.55, 0.62, 0.68, 0.74, 0.8)
    engine_server_policies: tuple[str, ...] = ("tokens", "aging")  # the harness's default first
    engine_server_min_queries: int = 100
    # The full-length run's loads, as shares of the highest load a 30 s point held, tried in order until one is VALID
    # (docs/performance/zen5-2026-12-07-find-target-processes/: full length held 0.975 of the highest 30 s probe)
    engine_full_server_shares: tuple[float, ...] = (0.95, 0.85)
    engine_sparse_weights_rate: float = 0.4
    engine_full_server: bool = True
    engine_full_server_duration_ms: int | None = None  # None: mlperf.conf's (600 s) and user.conf's query count
    tune: tuple[TuneConfig, ...] = field(default_factory=lambda: (
        TuneConfig(1), TuneConfig(4), TuneConfig(8), TuneConfig(16), TuneConfig(32), TuneConfig(8, 2), TuneConfig(16, 2)))


@dataclass
class SuiteModels:
    sparse_int8: ModelInfo
    dense_fp32_14l: ModelInfo | None = None
    dense_fp32_24l: ModelInfo | None = None
    ort_int8_14l: ModelInfo | None = None

    def all(self) -> list[ModelInfo | None]:
        return [self.sparse_int8, self.dense_fp32_14l, self.dense_fp32_24l, self.ort_int8_14l]
