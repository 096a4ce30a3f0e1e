"""Defaults and option bundles shared by every command that starts runs (run, bench, submission)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.backends import BackendOptions
from harness.backends.base import RAY_CONNECT_TIMEOUT_S
from harness.bucketing import DEFAULT_BUCKETS, buckets_for, parse_buckets
from harness.engine_choice import AUTO
from harness.errors import ConfigError
from harness.models import ModelInfo
from harness.scenarios import DEFAULT_SERVER_POLICY, SutOptions

# Per-scenario engine batch sizes and DeepSparse streams (docs/performance.md, Streams and batch: chosen by measurement on a
# 2-core AVX2 machine). Offline: 2 streams x batch 8 beat 1 stream x batch 16 in the same benchmark run
# (one stream per core scales better than one engine across both cores) and peak memory was lower.
# Server runs batch 1: DeepSparse engines have a fixed batch size, so a batch of 8 costs 8 windows of work
# even when one sample is waiting, ~350 ms at 384 tokens here, far past the 130 ms bound; and 1 stream, so
# one window gets both cores (a 384-token window on one core alone takes ~85 ms of the 130 ms).
DEFAULT_BATCH_SIZE = {"Offline": 8, "Server": 1, "SingleStream": 1}
DEFAULT_STREAMS = {"Offline": 2, "Server": 1, "SingleStream": 1}
# Server's tokens policy: the largest engine call in windows (packed: rows), and the sizes built below it (a call
# pads to the next one): few sizes, since DeepSparse compiles an engine per size and length.
TOKEN_POLICY_MAX_BATCH = 8
# ... and its engine streams: one per core, as Offline (docs/running.md, Server batching: on 2 cores one stream across
# both ran fewer windows per second per call than two one-core streams)
TOKEN_POLICY_STREAMS = 2
STREAM_BACKENDS = ("deepsparse", "openvino")  # engines that run parallel streams (ONNX Runtime: one session)


def powers_of_two_through(largest: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``largest``, and ``largest`` itself."""
    sizes = []
    size = 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return tuple(sizes + [largest])


def default_scheduler(streams: int | None) -> str:
    """DeepSparse scheduler for a stream count: multi_stream runs parallel streams, one per core group;
    otherwise the engine default (one stream across all cores)."""
    return "multi_stream" if streams and streams > 1 else "default"


@dataclass(frozen=True)
class QuickPreset:
    """A short smoke run: a few hundred features, seconds instead of the official 10 minutes."""

    count: int = 320
    min_duration_ms: int = 3000
    min_query_count: int = 64
    # Two length buckets instead of four: each DeepSparse engine takes ~78 s of one core to compile here
    # (whatever its length, batch or streams), and two compile side by side on two cores, so start-up
    # halves while bucketing is still exercised. An explicit --buckets wins.
    buckets: tuple[int, ...] = (192, 384)
    expected_latency_ms: float = 0.02  # SingleStream: below any engine's latency, a toy model's included


QUICK = QuickPreset()


def quick_overrides(scenario: str, feature_count: int) -> dict:
    """LoadGen settings of a --quick run, VALID on any machine: Offline answers every selected feature once with no
    minimum duration (a fast engine answers 320 features in about a second, under any fixed minimum: INVALID,
    "Increase expected QPS"); the latency scenarios stop after a few dozen queries, SingleStream expecting a
    latency below any engine's (LoadGen pre-generates queries from it and a run that outpaces them ends INVALID,
    "Ran out of generated queries")."""
    if scenario == "Offline":
        return {"min_duration_ms": 0, "min_query_count": feature_count}
    overrides = {"min_duration_ms": QUICK.min_duration_ms, "min_query_count": min(QUICK.min_query_count, feature_count)}
    if scenario == "SingleStream":
        overrides["expected_latency_ms"] = QUICK.expected_latency_ms
    return overrides


@dataclass(frozen=True)
class EngineSettings:
    """Backend and SUT settings as the command line takes them; unset values get per-scenario defaults."""

    backend: str = AUTO  # resolved to a named engine before any engine setting is derived (harness.engine_choice)
    batch_size: int | None = None
    num_cores: int | None = None
    num_streams: int | None = None
    scheduler: str | None = None  # None: multi_stream when num_streams > 1, else the engine default
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    workers: int | None = None  # None: one SUT worker per engine stream
    batch_timeout_ms: float = 10.0
    server_policy: str = DEFAULT_SERVER_POLICY
    token_budget: int | None = None  # Server, tokens policy (None: chosen from measured call times)
    buckets: tuple[int, ...] | None = DEFAULT_BUCKETS  # length bucketing; None: every window runs at full length
    fast_vnni_emulation: bool = False
    precision: str = "auto"  # OpenVINO: what its float operations run in (int8: insist on the model's INT8 matmuls)
    sparse_weights_rate: float | None = None  # OpenVINO: CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE
    # windows packed into rows (replaces buckets); None: packed for Server's tokens policy where the model has a packed
    # variant (its batches fill rows without padding), else not (packed_for)
    packing: bool | None = None
    cluster: str = "local"
    ray_address: str | None = None
    ray_workers: int | None = None
    ray_cpus_per_worker: int | None = None
    ray_connect_timeout_s: float = RAY_CONNECT_TIMEOUT_S

    @classmethod
    def from_args(cls, args) -> EngineSettings:
        return cls(
            backend=args.backend, batch_size=args.batch_size, num_cores=args.num_cores,
            num_streams=args.num_streams, scheduler=args.scheduler, intra_op_threads=args.intra_op_threads,
            inter_op_threads=args.inter_op_threads, workers=args.workers, batch_timeout_ms=args.batch_timeout_ms,
            server_policy=getattr(args, "server_policy", DEFAULT_SERVER_POLICY),
            token_budget=getattr(args, "token_budget", None),
            buckets=None if args.no_bucketing else (
                parse_buckets(args.buckets) if args.buckets is not None
                else QUICK.buckets if getattr(args, "quick", False) else DEFAULT_BUCKETS),
            fast_vnni_emulation=args.fast_vnni_emulation, packing=getattr(args, "packing", None),
            precision=args.precision, sparse_weights_rate=args.sparse_weights_rate,
            cluster=args.cluster, ray_address=args.ray_address,
            ray_workers=args.ray_workers, ray_cpus_per_worker=args.ray_cpus_per_worker,
            ray_connect_timeout_s=getattr(args, "ray_connect_timeout_s", RAY_CONNECT_TIMEOUT_S),
        )

    def streams(self, scenario: str) -> int | None:
        """Engine streams (DeepSparse, OpenVINO): as given, else the scenario's default when it is more than one
        (None leaves the engine's own default, one stream across all cores; ONNX Runtime has no streams)."""
        if self.backend == AUTO:  # a programming error: the command resolves --backend first
            raise ValueError("--backend auto must be resolved to an engine (harness.engine_choice) before its settings")
        if self.num_streams is not None:
            return self.num_streams
        default = TOKEN_POLICY_STREAMS if self.token_batching(scenario) else DEFAULT_STREAMS[scenario]
        return default if self.backend in STREAM_BACKENDS and default > 1 else None

    def token_batching(self, scenario: str) -> bool:
        """Server with the tokens policy: engine calls of varying batch size (its compiled sizes)."""
        return scenario == "Server" and self.server_policy == "tokens"

    def batch_size_for(self, scenario: str) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return TOKEN_POLICY_MAX_BATCH if self.token_batching(scenario) else DEFAULT_BATCH_SIZE[scenario]

    def packed_for(self, scenario: str, model: ModelInfo | None = None) -> bool:
        """Whether ``scenario`` runs packed rows: as ``--packing``/``--no-packing`` say, else for Server's tokens policy
        when ``model`` has a packed variant (unknown model: when the default model, built with one, would)."""
        if self.packing is not None:
            return self.packing
        return self.token_batching(scenario) and (model is None or bool(model.manifest.get("packed")))

    def backend_options(self, scenario: str, max_seq_length: int = 384, model: ModelInfo | None = None) -> BackendOptions:
        packing = self.packed_for(scenario, model)
        if packing and scenario != "Offline" and not self.token_batching(scenario):
            raise ConfigError(f"--packing is for Offline and for Server with --server-policy tokens; {scenario} runs one "
                              "or a few windows at a time, too few to fill a packed row (its length buckets do that job)")
        streams = self.streams(scenario)
        batch_size = self.batch_size_for(scenario)
        return BackendOptions(
            sequence_buckets=None if packing else buckets_for(self.buckets, max_seq_length),
            packing=packing,
            batch_size=batch_size,
            batch_sizes=powers_of_two_through(batch_size) if self.token_batching(scenario) else None,
            num_cores=self.num_cores,
            num_streams=streams,
            scheduler=self.scheduler or default_scheduler(streams),
            intra_op_threads=self.intra_op_threads, inter_op_threads=self.inter_op_threads,
            fast_vnni_emulation=self.fast_vnni_emulation, precision=self.precision,
            sparse_weights_rate=self.sparse_weights_rate, cluster=self.cluster, ray_address=self.ray_address,
            ray_workers=self.ray_workers, ray_cpus_per_worker=self.ray_cpus_per_worker,
            ray_connect_timeout_s=self.ray_connect_timeout_s,
        )

    def sut_options(self, scenario: str) -> SutOptions:
        if self.workers is not None:
            workers = self.workers
        elif self.cluster == "ray":
            workers = None  # as many as the Ray pool takes at once, known once its actors exist
        else:
            workers = self.streams(scenario) or 1
        return SutOptions(num_workers=workers, batch_timeout_ms=self.batch_timeout_ms, server_policy=self.server_policy,
                          token_budget=self.token_budget)
