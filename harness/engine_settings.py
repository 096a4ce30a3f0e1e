"""The engine settings of every command that starts runs (run, find-target, submission, the benchmark suite) and the
defaults each scenario gives them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace

from harness import options
from harness.backends.base import BackendOptions, EngineOptions
from harness.backends.cluster import RayOptions
from harness.backends.registry import ENGINES
from harness.bucketing import DEFAULT_BUCKETS, buckets_for, parse_buckets
from harness.engine_choice import AUTO, BACKEND_CHOICES
from harness.errors import ConfigError
from harness.models import ModelInfo
from harness.options import also, flag
from harness.scenarios import SutOptions

# Per-scenario engine batch sizes and streams, chosen by measurement (docs/performance.md, Streams and batch):
# Offline one stream per core; Server (aging/slack policies) batch 1 on one stream across the cores, since a fixed-size
# batch costs its whole size in work even when one sample waits.
DEFAULT_BATCH_SIZE = {"Offline": 8, "Server": 1, "SingleStream": 1}
DEFAULT_STREAMS = {"Offline": 2, "Server": 1, "SingleStream": 1}
# Server's tokens policy: the largest engine call in windows (packed: rows), and the sizes built below it (a call
# pads to the next one): few sizes, since DeepSparse compiles an engine per size and length. Its streams: one per core,
# as Offline (docs/running.md, Server batching).
TOKEN_POLICY_MAX_BATCH = 8
TOKEN_POLICY_STREAMS = 2


def powers_of_two_through(largest: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``largest``, and ``largest`` itself."""
    sizes = []
    size = 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return tuple(sizes + [largest])


@dataclass(frozen=True)
class QuickPreset:
    """A short smoke run: a few hundred features, seconds instead of the official 10 minutes."""

    count: int = 320
    min_duration_ms: int = 3000
    min_query_count: int = 64
    # Two length buckets instead of four: DeepSparse compiles one engine per length, the longest part of a short
    # run's start-up; bucketing is still exercised. An explicit --buckets wins.
    buckets: tuple[int, ...] = (192, 384)
    expected_latency_ms: float = 0.02  # SingleStream: below any engine's latency, a toy model's included


QUICK = QuickPreset()


def quick_overrides(scenario: str, feature_count: int) -> dict:
    """LoadGen settings of a --quick run, VALID on any machine: Offline answers every selected feature once with no
    minimum duration (a fast engine would finish under any fixed minimum: INVALID); the latency scenarios stop after a
    few dozen queries, SingleStream expecting a latency below any engine's (LoadGen pre-generates queries from it and a
    run that outpaces them ends INVALID)."""
    if scenario == "Offline":
        return {"min_duration_ms": 0, "min_query_count": feature_count}
    overrides = {"min_duration_ms": QUICK.min_duration_ms, "min_query_count": min(QUICK.min_query_count, feature_count)}
    if scenario == "SingleStream":
        overrides["expected_latency_ms"] = QUICK.expected_latency_ms
    return overrides


def _bucket_flag(spec: str) -> tuple[int, ...]:
    try:
        return parse_buckets(spec) or ()
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--buckets {spec!r}: ")) from None


@dataclass(frozen=True)
class EngineSettings:
    """The engine and its layout as the command line gives them (unset: the scenario's default); :meth:`for_scenario`
    turns them into what the backend and the SUT are built with. Every flag is declared here, on the options of the
    SUT (:class:`SutOptions`) and the Ray pool (:class:`RayOptions`), or on each engine's own options class."""

    backend: str = flag("--backend", default=AUTO, choices=BACKEND_CHOICES,
                        help="inference engine; auto (default): the engine measured fastest on this CPU class (OpenVINO "
                        "with AMX or AVX-512 VNNI, else DeepSparse), said at the start and recorded in run.json "
                        "(docs/running.md, Which engine)")
    batch_size: int | None = flag(
        "--batch-size", "--batch_size", type=int,
        help="engine batch size (default: " + ", ".join(f"{scenario} {n}" for scenario, n in DEFAULT_BATCH_SIZE.items())
        + f"; Server with the tokens policy: calls of up to {TOKEN_POLICY_MAX_BATCH} windows or rows)")
    num_streams: int | None = flag(
        "--num-streams", type=int,
        help="DeepSparse/OpenVINO streams (and SUT worker threads) (default: " +
        ", ".join(f"{scenario} {n}" for scenario, n in DEFAULT_STREAMS.items()) +
        f"; Server with the tokens policy: {TOKEN_POLICY_STREAMS})")
    num_cores: int | None = flag("--num-cores", type=int, help="DeepSparse cores / OpenVINO threads (default: all)")
    # None: the default buckets (--quick: its own); (): every window at full length
    buckets: tuple[int, ...] | None = also(
        flag("--buckets", type=_bucket_flag,
             help="length bucketing: sequence lengths to build engines for; each batch runs at the smallest that holds "
             f"its longest window (default {','.join(map(str, DEFAULT_BUCKETS))}; with --quick "
             f"{','.join(map(str, QUICK.buckets))}; the window length is always one)"),
        "--no-bucketing", action="store_const", const=(),
        help="run every window padded to the full 384 tokens, like the MLPerf reference (closed-division style)")
    # None: packed rows for Server's tokens policy where the model has a packed variant (packed_for)
    packing: bool | None = also(
        flag("--packing", action="store_true",
             help="pack several windows into each 384-token row (block-diagonal attention) and run the model's packed "
             "variant, so almost no token is padding; --batch-size counts rows. Replaces length bucketing; needs a "
             "model directory exported with its packed variant (docs/running.md, Packing). Offline, and Server with "
             "the tokens policy (its default there where the model has a packed variant)"),
        "--no-packing", action="store_false", help="Server with the tokens policy: length buckets instead of packed rows")
    sut: SutOptions = field(default_factory=SutOptions)
    ray: RayOptions = field(default_factory=RayOptions)
    engine_options: dict[str, EngineOptions] = field(default_factory=dict)  # by engine name; unnamed: its defaults

    def __post_init__(self) -> None:
        options.require_at_least_one(self, "batch_size", "num_streams", "num_cores")
        if self.packing and self.ray.on_ray:
            raise ConfigError("--packing runs on local engines only (not with --cluster ray)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EngineSettings:
        settings = options.from_args(cls, args, engine_options={
            name: options.from_args(engine.options_type(), args) for name, engine in ENGINES.items()})
        if settings.buckets is None and getattr(args, "quick", False):
            settings = replace(settings, buckets=QUICK.buckets)
        return settings

    @staticmethod
    def add_flags(parser: argparse.ArgumentParser, note: str = "") -> None:
        """The flags of every command that starts runs: the engine, its layout, the SUT, each engine's own, Ray."""
        options.add_flags(parser.add_argument_group("engine" + note), EngineSettings)
        options.add_flags(parser.add_argument_group("SUT" + note), SutOptions)
        for engine in ENGINES.values():
            options.add_flags(parser.add_argument_group(engine.title + note), engine.options_type())
        options.add_flags(parser.add_argument_group("Ray cluster" + note), RayOptions)

    def streams(self, scenario: str) -> int | None:
        """Engine streams (DeepSparse, OpenVINO): as given, else the scenario's default when it is more than one
        (None leaves the engine's own default, one stream across all cores; ONNX Runtime has no streams)."""
        if self.backend == AUTO:  # a programming error: the command resolves --backend first
            raise ValueError("--backend auto must be resolved to an engine (harness.engine_choice) before its settings")
        if self.num_streams is not None:
            return self.num_streams
        default = TOKEN_POLICY_STREAMS if self.token_batching(scenario) else DEFAULT_STREAMS[scenario]
        return default if ENGINES[self.backend].streams and default > 1 else None

    def token_batching(self, scenario: str) -> bool:
        """Server with the tokens policy: engine calls of varying batch size (its compiled sizes)."""
        return scenario == "Server" and self.sut.server_policy == "tokens"

    def packed_for(self, scenario: str, model: ModelInfo | None = None) -> bool:
        """Whether ``scenario`` runs packed rows: as ``--packing``/``--no-packing`` say, else for Server's tokens policy
        when ``model`` has a packed variant (unknown model: when the default model, built with one, would)."""
        if self.packing is not None:
            return self.packing
        return self.token_batching(scenario) and (model is None or bool(model.manifest.get("packed")))

    def check(self, scenario: str, model: ModelInfo | None = None) -> None:
        """Refuse settings ``scenario`` cannot run (said before the data and model work)."""
        if self.packed_for(scenario, model) and scenario != "Offline" and not self.token_batching(scenario):
            raise ConfigError(f"--packing is for Offline and for Server with --server-policy tokens; {scenario} runs one "
                              "or a few windows at a time, too few to fill a packed row (its length buckets do that job)")

    def for_scenario(self, scenario: str, max_seq_length: int = 384,
                     model: ModelInfo | None = None) -> tuple[BackendOptions, SutOptions]:
        """The backend's and the SUT's options for ``scenario``: the one place the scenario defaults apply."""
        self.check(scenario, model)
        packing = self.packed_for(scenario, model)
        streams = self.streams(scenario)
        batch_size = self.batch_size if self.batch_size is not None else (
            TOKEN_POLICY_MAX_BATCH if self.token_batching(scenario) else DEFAULT_BATCH_SIZE[scenario])
        buckets = DEFAULT_BUCKETS if self.buckets is None else self.buckets or None
        backend = BackendOptions(
            sequence_buckets=None if packing else buckets_for(buckets, max_seq_length), packing=packing,
            batch_size=batch_size,
            batch_sizes=powers_of_two_through(batch_size) if self.token_batching(scenario) else None,
            num_cores=self.num_cores, num_streams=streams, ray=self.ray,
            engine=self.engine_options.get(self.backend) or ENGINES[self.backend].options_type()())
        workers = self.sut.num_workers
        if workers is None and not self.ray.on_ray:  # on Ray: as many as the pool takes at once, known once it exists
            workers = streams or 1
        return backend, replace(self.sut, num_workers=workers)
