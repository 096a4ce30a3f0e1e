"""The benchmark suite behind ``python -m benchmarks``: one command, one set of features, every figure
of docs/performance.md (tables in ``report.md``/``bench.json``, plots as PNG).

Jobs, in order (each in its own process, see ``benchmarks.jobs``):
  1. ours: DeepSparse, 50% 4-block INT8, length bucketing, the default streams x batch: Offline over every
     feature (headline, peak memory), then over the first N features alternated with bare engine loops
     (harness overhead); the same over other (streams, batch) configurations, to check the default;
  2. the same model padded to 384 (no bucketing), one stream, the reference batch: our Offline SUT and
     the published-design Offline loop, with bare loops (overhead without bucketing);
  3. peers, Offline over the same N features: DeepSparse FP32 dense 14 layers; ONNX Runtime FP32 dense 24
     and 14 layers, ORT's own dynamic INT8 of the dense 14-layer model, and the sparse INT8 model;
  4. Server, ours (dynamic batching, buckets) at fractions of job 1's Offline samples/s, also with other
     stream counts, each with single-window service times for the queueing bound
     (``benchmarks.queueing``); a SingleStream run; and the published design (one sample at a time,
     synchronous) at fractions of its own batch-1 capacity;
  5. tuning: bare-loop samples/s over batch size x streams on one engine length; section ``buckets``: an
     engine per (length, batch), and every bucket set of those lengths ranked with its batch chosen per
     bucket (``bucket_plans``), with the engines' compile time and memory;
  6. section ``vnni``: DeepSparse's faster INT8 emulation (``NM_FAST_VNNI_EMULATION``) against its default,
     Offline over every feature and SingleStream with our defaults, in adjacent jobs;
  7. scale-out (section ``ray``): the headline job's model and features through a Ray pool of one-core workers
     on a loopback cluster, Offline and a Server sweep, and the projection to N nodes
     (``benchmarks.scaleout``);
  8. section ``engines``: OpenVINO beside DeepSparse on the same INT8 model (OpenVINO runs its QDQ form) with the
     harness's defaults, in adjacent jobs: Offline over every feature, the Server sweep at fractions of each
     engine's own Offline samples/s, one full-length Server run of OpenVINO (mlperf.conf's 600 s) at the
     highest load its sweep held, SingleStream; and OpenVINO's variants on the first N features (float
     operations in f32 instead of its default, sparse weight decompression, the dense FP32 model), and whether the
     engine ``--backend auto`` picks on this CPU class was the faster one here (``auto_check``).
Every job names its engine: "ours" is this harness's design on DeepSparse, so that it compares with Neural Magic's
published designs on the same engine (``--backend auto``, the command line's default, may pick OpenVINO).
All models are the untrained benchmark models: speed figures are valid, accuracy figures would not be.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.designs import V3_BATCH_SIZE, V3_BUCKETS
from benchmarks.jobs import BenchJob, LoadGenTest, TuneConfig, run_job_isolated
from benchmarks.macs import MacProfile, compute_peak, count_macs
from benchmarks.scaleout import TWO_HOSTS_JOB, measure_two_hosts, two_host_summary
from cmdline.provenance import provenance
from harness.backends import BackendOptions
from harness.backends.base import EngineOptions
from harness.backends.cluster import RayOptions
from harness.backends.deepsparse_backend import DeepSparseOptions
from harness.backends.openvino_backend import OpenVinoOptions
from harness.bucketing import DEFAULT_BUCKETS, bucket_index, bucket_shares, buckets_for
from harness.engine_choice import rule_for
from squad.data import DatasetFiles
from harness.errors import ConfigError
from harness.isolated import request_to_spec
from harness.models import ModelInfo
from harness.rundir import create_run_dir, mark_complete, mark_incomplete, write_json_atomic
from harness.run_options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_STREAMS,
    TOKEN_POLICY_MAX_BATCH,
    TOKEN_POLICY_STREAMS,
    powers_of_two_through,
)
from harness.run_record import harness_overhead_pct
from harness.runner import RunRequest
from harness.scenarios import SERVER_LATENCY_BOUND_MS, SutOptions
from harness.settings import LoadGenOverrides
from squad.features import FeatureSet
from harness.sysinfo import machine_info, software_versions

log = logging.getLogger(__name__)

SECTIONS = ("offline", "peers", "server", "buckets", "tune", "vnni", "ray", "engines", "hosts")
ENGINE_JOB_PREFIX = {"deepsparse": "ds", "openvino": "ov"}  # section engines' job labels
TARGETS = {
    "offline_samples_per_s_full": 58.0,  # 29 per core: Neural Magic's best published per-core Offline (v3.0)
    "ours_vs_v3_design_offline": 1.25,
    "ours_vs_published_offline": 1.5,
    "ours_vs_ort_fp32_dense_24l": 6.0,
    "harness_overhead_pct": 2.0,
    "server_vs_offline": 0.85,
    "server_vs_queueing_bound": 0.9,  # the Server job's best valid QPS / the FIFO bound from its own service times
    "peak_rss_mb_full_offline": 1536.0,
}


def _engine_options(backend: str, *, fast_vnni: bool, precision: str, sparse_weights_rate: float | None) -> EngineOptions:
    """The engine's own options of a job: the variants the suite compares (DeepSparse's fast VNNI emulation, OpenVINO's
    precision and sparse weights)."""
    if backend == "deepsparse":
        return DeepSparseOptions(fast_vnni_emulation=fast_vnni)
    if backend == "openvino":
        return OpenVinoOptions(precision=precision, sparse_weights_rate=sparse_weights_rate)
    return EngineOptions()


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
    # Loads to try. On a 2-core AVX2 machine one 384-token window alone takes ~50 ms of the 130 ms
    # budget, so the valid region is at low utilisation; the points bracket where p99 crosses the bound.
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
    # ranked with each bucket at its own fastest batch (bucket_plans). Each engine costs ~70 s to compile here.
    bucket_lengths: tuple[int, ...] = (64, 128, 192, 256, 320, 384)
    bucket_batches: tuple[int, ...] = (8, 16)
    bucket_windows: int = 768
    # Section "ray": as many one-CPU nodes as this machine has cores, one one-core worker each, against the
    # headline local job on the same cores.
    ray_nodes: int = 2
    ray_server_fractions: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3)  # of the local Offline samples/s
    # Section "engines": each engine's Server sweep at these fractions of its own Offline samples/s; OpenVINO's
    # full-length run at this share of the highest load its sweep held (a 600 s run meets LoadGen's early-stopping
    # estimate over ~20x more queries than a 30 s point); OpenVINO's sparse-weights job at this rate (the weight
    # sparsity from which it decompresses sparse weights; the 4-block matrices hold 50% zeros).
    engine_server_fractions: tuple[float, ...] = (0.15, 0.25, 0.35, 0.45, 0.55)
    # ... with the tokens policy (its batches grow with the load: it holds VALID loads nearer Offline's)
    engine_token_server_fractions: tuple[float, ...] = (0.45, 0.55, 0.62, 0.68, 0.74, 0.8)
    engine_server_policies: tuple[str, ...] = ("tokens", "aging")  # the harness's default first
    engine_server_min_queries: int = 100
    engine_full_server_share: float = 0.9
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


class Suite:
    def __init__(self, config: SuiteConfig, models: SuiteModels, *, features: FeatureSet, dataset: DatasetFiles,
                 mlperf_conf: Path, user_conf: Path, out_root: Path, feature_cache_dir: Path, progress: bool = True,
                 reuse: Path | list[Path] | None = None):
        self.config = config
        self.models = models
        self.features = features
        self.dataset = dataset
        self.mlperf_conf = mlperf_conf
        self.user_conf = user_conf
        self.feature_cache_dir = feature_cache_dir
        self.progress = progress
        unknown = set(config.sections) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"--sections: unknown {sorted(unknown)}; expected some of {', '.join(SECTIONS)}")
        self.count = min(config.samples, len(features))
        reuse = [reuse] if isinstance(reuse, (str, Path)) else list(reuse or [])
        self.reused: dict = {}
        for path in reuse:  # the first suite that has a job wins
            self.reused = {**_load_reuse(path, self.count, features), **self.reused}
        self.out_dir = create_run_dir(out_root, "bench", "suite", setting="--out-dir")
        self.results: dict = {"jobs": {}, "config": _plain(asdict(config)), "features": len(features),
                              "samples": self.count, "dataset": str(dataset.dev_json), "official_dataset": dataset.official,
                              "reused_from": [str(path) for path in reuse] or None, "provenance": provenance()}

    # -- jobs -------------------------------------------------------------------------------------
    def _job(self, label: str, section: str, *, backend: str, model: ModelInfo, scenario: str, batch_size: int,
             buckets: tuple[int, ...] | None, tests: list[LoadGenTest], bare_loop_count: int = 0,
             capacity_count: int = 0, service_profile_count: int = 0, streams: int = 1, timeout_ms: float | None = None,
             tune: tuple[TuneConfig, ...] = (), ray: dict | None = None, server_policy: str = "aging",
             packing: bool = False, fast_vnni: bool = False, tune_count: int = BenchJob.tune_count,
             precision: str = "auto", sparse_weights_rate: float | None = None) -> dict | None:
        """Run a job of a selected section, or take its result from the reused suite (None: neither)."""
        if section not in self.config.sections:
            if label in self.reused:
                self.results["jobs"][label] = {**self.reused[label], "reused": True}
            return self.results["jobs"].get(label)
        request = RunRequest(
            scenario=scenario, mode="performance", backend=backend, model=model, features=self.features,
            dataset=self.dataset,
            backend_options=BackendOptions(batch_size=batch_size, num_streams=streams if streams > 1 else None,
                                           batch_sizes=(powers_of_two_through(batch_size)
                                                        if scenario == "Server" and server_policy == "tokens" else None),
                                           sequence_buckets=buckets_for(buckets or None, self.features.params.max_seq_length),
                                           packing=packing, ray=RayOptions(**ray) if ray else RayOptions(),
                                           engine=_engine_options(backend, fast_vnni=fast_vnni, precision=precision,
                                                                  sparse_weights_rate=sparse_weights_rate)),
            sut_options=SutOptions(num_workers=None if ray else streams,  # Ray: the pool's parallelism
                                   batch_timeout_ms=timeout_ms or self.config.server_timeout_ms,
                                   server_policy=server_policy),
            mlperf_conf=self.mlperf_conf, user_conf=self.user_conf, runs_root=self.out_dir / "runs" / label,
            overrides=LoadGenOverrides(), progress=self.progress,
        )
        job = BenchJob(label=label, request=request_to_spec(request, self.feature_cache_dir), tests=tests,
                       bare_loop_count=bare_loop_count, capacity_count=capacity_count, tune=list(tune),
                       tune_count=tune_count, service_profile_count=service_profile_count)
        log.info("bench job %s (%s, %s, %s)", label, backend, model.label, "packed rows" if packing else
                 "buckets " + ",".join(map(str, buckets)) if buckets else "padded to 384")
        started = time.perf_counter()
        result = run_job_isolated(job)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        result["model"] = model.label
        result["backend_name"] = backend
        result["buckets"] = list(buckets) if buckets else None
        result["packing"] = packing
        self.results["jobs"][label] = result
        self._save()
        return result

    def _offline_test(self, label: str, count: int | None, design: str = "ours") -> LoadGenTest:
        n = count or len(self.features)
        return LoadGenTest(label=label, count=count, design=design,
                           overrides={"min_duration_ms": 0, "min_query_count": n, "max_query_count": n, "target_qps": 1.0})

    def _features_test(self, count: int | None) -> LoadGenTest:
        """Offline over the first ``count`` features (None: every feature), under its usual label."""
        return self._offline_test(f"Offline, {'all' if count is None else 'first'} {count or len(self.features)} features",
                                  count)

    def _headline_test(self) -> LoadGenTest:
        """Offline over every feature, or over the first N when the suite skips the full run (--no-full)."""
        return self._features_test(None if self.config.full_offline else self.count)

    def _singlestream_test(self) -> LoadGenTest:
        return LoadGenTest(label="SingleStream", overrides={"min_duration_ms": self.config.singlestream_duration_ms,
                                                            "min_query_count": 100})

    def run(self) -> dict:
        c, m = self.config, self.models
        try:
            tests = [self._features_test(self.count)]
            if c.full_offline:
                tests.append(self._features_test(None))
            ours = self._job("ds-sparse-int8-bucketed", "offline", backend="deepsparse", model=m.sparse_int8,
                             scenario="Offline", batch_size=c.offline_batch, buckets=c.buckets, tests=tests,
                             streams=c.offline_streams, bare_loop_count=self.count)
            for streams, batch in c.other_offline_configs:
                if (streams, batch) != (c.offline_streams, c.offline_batch):
                    self._job(f"ds-sparse-int8-bucketed-{streams}x{batch}", "offline", backend="deepsparse",
                              model=m.sparse_int8, scenario="Offline", batch_size=batch, buckets=c.buckets,
                              tests=tests, streams=streams)
            # Ours with packing instead of buckets: several windows per 384-token row (harness.backends.packed)
            self._job("ds-sparse-int8-packed", "offline", backend="deepsparse", model=m.sparse_int8, scenario="Offline",
                      batch_size=c.offline_batch, buckets=None, packing=True, tests=tests, streams=c.offline_streams)
            # Neural Magic's v3.0 design on the same model and features (all of them when ours ran on all).
            self._job("ds-sparse-int8-v3design", "offline", backend="deepsparse", model=m.sparse_int8, scenario="Offline",
                      batch_size=c.v3_batch, buckets=c.v3_buckets, streams=1,
                      tests=[replace(test, label=f"v3.0 design: {test.label}", design="published-v3-offline")
                             for test in tests])
            self._job("ds-sparse-int8-padded", "offline", backend="deepsparse", model=m.sparse_int8, scenario="Offline",
                      batch_size=c.reference_batch, buckets=None, bare_loop_count=self.count,
                      tests=[self._features_test(self.count),
                             self._offline_test("published design: padded batch loop", self.count, "published-offline")])
            peers = [("ds-dense-fp32-14l", "deepsparse", m.dense_fp32_14l),
                     ("ort-dense-fp32-24l", "onnxruntime", m.dense_fp32_24l),
                     ("ort-dense-fp32-14l", "onnxruntime", m.dense_fp32_14l),
                     ("ort-dynamic-int8-14l", "onnxruntime", m.ort_int8_14l),
                     ("ort-sparse-int8", "onnxruntime", m.sparse_int8)]
            for label, backend, model in peers:
                if model is not None or label in self.reused:
                    self._job(label, "peers", backend=backend, model=model, scenario="Offline", batch_size=c.reference_batch,
                              buckets=None, tests=[self._features_test(self.count)])
            if "server" in c.sections:
                if ours is None:
                    raise ConfigError("--sections server needs our Offline result: include 'offline' or --reuse a "
                                      "suite that has it")
                offline_sps = _records(ours)[-1]["results"]["samples_per_second"]
                server = {"min_duration_ms": c.server_duration_ms, "min_query_count": 100}
                tests = [LoadGenTest(label=f"Server {f:.0%} of Offline",
                                     overrides={**server, "target_qps": round(f * offline_sps, 3)}) for f in c.server_fractions]
            else:
                server, tests, offline_sps = {}, [], None
            self._job("server-ours", "server", backend="deepsparse", model=m.sparse_int8, scenario="Server",
                      batch_size=c.server_batch, buckets=c.buckets, timeout_ms=c.server_timeout_ms, tests=tests,
                      streams=c.server_streams, service_profile_count=c.service_profile_count)
            for policy in c.other_server_policies:  # the same sweep, another choice of which sample runs next
                self._job(f"server-ours-{policy}", "server", backend="deepsparse", model=m.sparse_int8, scenario="Server",
                          batch_size=c.server_batch, buckets=c.buckets, timeout_ms=c.server_timeout_ms, tests=tests,
                          streams=c.server_streams, server_policy=policy)
            for streams in sorted(set(c.other_server_streams) - {c.server_streams}):
                self._job(f"server-ours-{streams}streams", "server", backend="deepsparse", model=m.sparse_int8,
                          scenario="Server", batch_size=c.server_batch, buckets=c.buckets, timeout_ms=c.server_timeout_ms,
                          streams=streams, service_profile_count=c.service_profile_count,
                          tests=[LoadGenTest(label=f"Server {f:.0%} of Offline",
                                             overrides={**server, "target_qps": round(f * offline_sps, 3)})
                                 for f in c.other_streams_server_fractions] if server else [])
            self._job("singlestream-ours", "server", backend="deepsparse", model=m.sparse_int8, scenario="SingleStream",
                      batch_size=DEFAULT_BATCH_SIZE["SingleStream"], buckets=c.buckets, streams=DEFAULT_STREAMS["SingleStream"],
                      tests=[self._singlestream_test()])
            self._job("server-published", "server", backend="deepsparse", model=m.sparse_int8, scenario="Server",
                      batch_size=1, buckets=None, capacity_count=64,
                      tests=[LoadGenTest(label=f"published Server {f:.0%} of batch-1 capacity", overrides=server,
                                         design="published-server", capacity_fraction=f)
                             for f in c.published_server_fractions])
            self._job("bucket-lengths", "buckets", backend="deepsparse", model=m.sparse_int8, scenario="Offline",
                      batch_size=c.offline_batch, buckets=None, tests=[], tune_count=c.bucket_windows,
                      tune=tuple(TuneConfig(batch, c.offline_streams, length)
                                 for length in c.bucket_lengths for batch in c.bucket_batches))
            self._job("tune-ds-sparse-int8", "tune", backend="deepsparse", model=m.sparse_int8, scenario="Offline",
                      batch_size=c.reference_batch, buckets=None, tests=[], tune=c.tune)
            self._vnni_jobs()
            self._ray_jobs(tests=[self._headline_test()])
            self._engine_jobs()
            self._two_host_job()
        except BaseException:
            self._save()
            mark_incomplete(self.out_dir, "the benchmark suite stopped before its last job (see bench.json)")
            raise
        self.results["summary"] = summarize(self.results, self.models, self.features)
        self._save()
        from benchmarks.report import write_plots, write_report

        self.results["plots"] = write_plots(self.results, self.out_dir)
        self._save()
        write_report(self.results, self.out_dir)
        mark_complete(self.out_dir)
        return self.results

    def _vnni_jobs(self) -> None:
        """Section vnni: DeepSparse's faster INT8 emulation on CPUs without VNNI (``NM_FAST_VNNI_EMULATION``,
        "at the expense of accuracy") against its default emulation: our default Offline and SingleStream
        settings, the same model and features, each pair in adjacent jobs. Its F1 cost is measured on a
        trained model by compression's real-accuracy experiment."""
        c, m = self.config, self.models
        for fast in (False, True):
            self._job(f"vnni-{'fast' if fast else 'default'}-offline", "vnni", backend="deepsparse", model=m.sparse_int8,
                      scenario="Offline", batch_size=c.offline_batch, buckets=c.buckets, streams=c.offline_streams,
                      tests=[self._headline_test()], fast_vnni=fast)
        for fast in (False, True):
            self._job(f"vnni-{'fast' if fast else 'default'}-singlestream", "vnni", backend="deepsparse",
                      model=m.sparse_int8, scenario="SingleStream", batch_size=DEFAULT_BATCH_SIZE["SingleStream"],
                      buckets=c.buckets, streams=DEFAULT_STREAMS["SingleStream"], tests=[self._singlestream_test()], fast_vnni=fast)

    def _engine_jobs(self) -> None:
        """Section engines (module docstring, 8): OpenVINO and DeepSparse, same INT8 model, features and defaults."""
        c, m = self.config, self.models
        measuring = "engines" in c.sections
        offline_tests = [self._features_test(self.count), self._headline_test()]
        # SingleStream at an expected latency below either engine's, so LoadGen generates queries enough for the
        # faster one (user.conf's 30 ms is the DeepSparse model's; a faster engine ran out of queries: INVALID)
        single = replace(self._singlestream_test(), overrides={**self._singlestream_test().overrides,
                                                               "expected_latency_ms": 5})
        offline: dict[str, dict | None] = {}
        for engine in ("deepsparse", "openvino"):
            short = ENGINE_JOB_PREFIX[engine]
            offline[engine] = self._job(f"{short}-engine-offline", "engines", backend=engine, model=m.sparse_int8,
                                        scenario="Offline", batch_size=c.offline_batch, buckets=c.buckets,
                                        streams=c.offline_streams, tests=offline_tests)
        first = [self._features_test(self.count)]
        self._job("ov-engine-offline-f32", "engines", backend="openvino", model=m.sparse_int8, scenario="Offline",
                  batch_size=c.offline_batch, buckets=c.buckets, streams=c.offline_streams, tests=first, precision="f32")
        self._job("ov-engine-offline-sparse-weights", "engines", backend="openvino", model=m.sparse_int8,
                  scenario="Offline", batch_size=c.offline_batch, buckets=c.buckets, streams=c.offline_streams, tests=first,
                  sparse_weights_rate=c.engine_sparse_weights_rate)
        if m.dense_fp32_14l is not None or "ov-dense-fp32-14l" in self.reused:
            self._job("ov-dense-fp32-14l", "engines", backend="openvino", model=m.dense_fp32_14l, scenario="Offline",
                      batch_size=c.offline_batch, buckets=c.buckets, streams=c.offline_streams, tests=first)
        server = {"min_duration_ms": c.server_duration_ms, "min_query_count": c.engine_server_min_queries}
        fractions = {"tokens": c.engine_token_server_fractions, "aging": c.engine_server_fractions,
                     "slack": c.engine_server_fractions}
        for engine in ("deepsparse", "openvino"):
            short = ENGINE_JOB_PREFIX[engine]
            sps = (_records(offline[engine])[-1]["results"]["samples_per_second"]
                   if measuring and offline.get(engine) else None)
            for policy in c.engine_server_policies:
                sweep = [LoadGenTest(label=f"Server {f:.0%} of its Offline",
                                     overrides={**server, "target_qps": round(f * sps, 3)})
                         for f in fractions[policy]] if sps else []
                self._job(engine_server_job(short, policy), "engines", backend=engine, model=m.sparse_int8,
                          scenario="Server", tests=sweep, **self._server_layout(policy))
            self._job(f"{short}-engine-singlestream", "engines", backend=engine, model=m.sparse_int8,
                      scenario="SingleStream", batch_size=DEFAULT_BATCH_SIZE["SingleStream"], buckets=c.buckets,
                      streams=DEFAULT_STREAMS["SingleStream"], tests=[single])
            # one full-length run, with the policy whose sweep held the highest VALID load, at a share of that load
            held = {policy: best_valid_server(_server_points(self.results["jobs"].get(engine_server_job(short, policy))
                                                             or {})) for policy in c.engine_server_policies}
            policy, point = max(((p, h) for p, h in held.items() if h and measuring),
                                key=lambda pair: pair[1]["target_qps"], default=(c.engine_server_policies[0], None))
            label = f"{short}-engine-server-full"
            if c.engine_full_server and (point or label in self.reused):
                target = round(c.engine_full_server_share * point["target_qps"], 3) if point else None
                duration = ({} if c.engine_full_server_duration_ms is None else
                            {"min_duration_ms": c.engine_full_server_duration_ms, "min_query_count": 1})
                self._job(label, "engines", backend=engine, model=m.sparse_int8, scenario="Server",
                          tests=[LoadGenTest(label=f"Server, full length, policy {policy}"
                                             + ("" if not duration else " (shortened)"),
                                             overrides={"target_qps": target, **duration})] if target else [],
                          **self._server_layout(policy))

    def _server_layout(self, policy: str) -> dict:
        """The harness's default Server engine layout for ``policy`` (harness.run_options): the tokens policy's calls
        of 1..8 windows or packed rows on one stream per core; the others' batches of --batch-size on one stream."""
        c = self.config
        if policy == "tokens":
            packed = bool(self.models.sparse_int8.manifest.get("packed"))
            return {"batch_size": TOKEN_POLICY_MAX_BATCH, "streams": TOKEN_POLICY_STREAMS, "server_policy": policy,
                    "packing": packed, "buckets": None if packed else c.buckets}
        return {"batch_size": c.server_batch, "buckets": c.buckets, "timeout_ms": c.server_timeout_ms,
                "streams": c.server_streams, "server_policy": policy}

    def _ray_jobs(self, tests: list[LoadGenTest]) -> None:
        """Section ray, one invocation, same model and features throughout.

        Offline over every feature locally (the harness's defaults) and through a pool of one-core workers
        on a loopback cluster of as many one-CPU nodes (the multi-node path). Then, on a loopback cluster of
        one node with all the cores: the default placement chosen by measurement (the first ``--samples``
        features through one actor owning the node vs one actor per core), and the Server sweep through the
        default placement (one actor, one stream over the node's cores) against the same sweep locally (one
        stream over the same cores)."""
        c, m = self.config, self.models
        measuring = "ray" in c.sections
        from benchmarks.scaleout import loopback_cluster

        cluster = loopback_cluster(c.ray_nodes) if measuring else None
        try:
            offline = {}
            for where, options in (("local", None), ("ray", {"cluster": "ray", "workers": c.ray_nodes,
                                                             "cpus_per_worker": 1,
                                                             "address": cluster.address if cluster else None})):
                offline[where] = self._job(f"{where}-offline", "ray", backend="deepsparse", model=m.sparse_int8,
                                           scenario="Offline", batch_size=c.offline_batch, buckets=c.buckets,
                                           tests=tests, streams=c.offline_streams if options is None else 1, ray=options)
        finally:
            if cluster is not None:
                cluster.shutdown()
        node = loopback_cluster(1, cpus_per_node=c.ray_nodes) if measuring else None
        address = node.address if node else None
        first = [self._features_test(self.count)]
        try:
            for label, ray in (("ray-placement-node", {"workers": None, "cpus_per_worker": None}),
                               ("ray-placement-core", {"workers": c.ray_nodes, "cpus_per_worker": 1})):
                self._job(label, "ray", backend="deepsparse", model=m.sparse_int8, scenario="Offline",
                          batch_size=c.offline_batch, buckets=c.buckets, tests=first,
                          streams=c.offline_streams if label.endswith("node") else 1,
                          ray={"cluster": "ray", "address": address, **ray})
            # Server: both sweeps at the same loads, fractions of the local Offline samples/s
            sweep = []
            if measuring and offline.get("local") is not None:
                sps = _records(offline["local"])[-1]["results"]["samples_per_second"]
                server = {"min_duration_ms": c.server_duration_ms, "min_query_count": 100}
                sweep = [LoadGenTest(label=f"Server {f:.0%} of local Offline",
                                     overrides={**server, "target_qps": round(f * sps, 3)}) for f in c.ray_server_fractions]
            for where, options in (("local", None), ("ray", {"cluster": "ray", "address": address})):
                self._job(f"{where}-server", "ray", backend="deepsparse", model=m.sparse_int8, scenario="Server",
                          batch_size=c.server_batch, buckets=c.buckets, timeout_ms=c.server_timeout_ms, tests=sweep,
                          streams=c.server_streams, service_profile_count=c.service_profile_count if options else 0,
                          ray=options)
        finally:
            if node is not None:
                node.shutdown()

    def _two_host_job(self) -> None:
        """Section hosts (module docstring, 9): Offline over the first ``--samples`` features across two emulated
        hosts against local on the same two cores (:func:`benchmarks.scaleout.measure_two_hosts`)."""
        if "hosts" not in self.config.sections:
            if TWO_HOSTS_JOB in self.reused:
                self.results["jobs"][TWO_HOSTS_JOB] = {**self.reused[TWO_HOSTS_JOB], "reused": True}
            return
        c = self.config
        self.results["jobs"][TWO_HOSTS_JOB] = measure_two_hosts(
            self.models.sparse_int8.onnx_path.parent, self.dataset.dev_json.parent, self.feature_cache_dir.parent,
            self.out_dir / "runs" / TWO_HOSTS_JOB, count=self.count, feature_count=len(self.features),
            buckets=c.buckets, batch_size=c.offline_batch, streams=c.offline_streams, mlperf_conf=self.mlperf_conf,
            user_conf=self.user_conf)
        self._save()

    def _save(self) -> None:
        self.results.update({"machine": machine_info(), "software": software_versions()})
        write_json_atomic(self.out_dir / "bench.json", self.results)


def _load_reuse(path: Path, count: int, features: FeatureSet) -> dict:
    """Jobs of an earlier suite run (its bench.json) on the same features, to be reported again."""
    bench_json = Path(path) / "bench.json" if Path(path).is_dir() else Path(path)
    try:
        earlier = json.loads(bench_json.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--reuse {path}: no readable bench.json ({exc})") from exc
    if earlier.get("samples") != count or earlier.get("features") != len(features):
        raise ConfigError(f"--reuse {path}: measured on {earlier.get('samples')} of {earlier.get('features')} features, "
                          f"this run uses {count} of {len(features)} (same --samples and data dir needed)")
    return earlier.get("jobs", {})


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _records(job: dict) -> list[dict]:
    return job.get("records", [])


def computed_lengths(features: FeatureSet, count: int | None, buckets: list[int] | None) -> np.ndarray:
    """Tokens each window is computed at: its bucket (bucket-pure batches), or the full window length."""
    lengths = features.seq_lengths[: count or len(features)]
    if not buckets:
        return np.full(lengths.shape, features.params.max_seq_length)
    return np.asarray(buckets)[bucket_index(tuple(buckets), lengths)]


def summarize(results: dict, models: SuiteModels, features: FeatureSet) -> dict:
    """Offline table rows, Server curves, tuning rows and the targets, from the jobs' raw results."""
    peak = compute_peak()
    profiles: dict[str, MacProfile] = {}

    def profile(model_label: str) -> MacProfile | None:
        if model_label not in profiles:
            for model in (models.sparse_int8, models.dense_fp32_14l, models.dense_fp32_24l, models.ort_int8_14l):
                if model is not None and model.label == model_label:
                    profiles[model_label] = count_macs(model)
        return profiles.get(model_label)

    offline_rows, server_rows, singlestream_rows, tune_rows, length_rows = [], [], [], [], []
    for label, job in results["jobs"].items():
        for record in _records(job):
            test = record["bench_test"]
            r = record["results"]
            if record["scenario"] == "Offline":
                sps = float(r["samples_per_second"])
                packing = record["backend"].get("packing") if job.get("packing") else None
                if packing:  # every window is charged its share of the rows (MACs: attention approximated)
                    count = test["count"] or len(features)
                    lengths = np.full(count, packing["row_length"] / packing["windows_per_row"])
                else:
                    lengths = computed_lengths(features, test["count"], job["buckets"])
                prof = profile(job["model"])
                macs = float(prof.effective(lengths).mean()) if prof else None
                row = {
                    "job": label, "test": test["label"], "design": test["design"], "backend": job["backend_name"],
                    "model": job["model"], "buckets": job["buckets"], "batch_size": record["backend"].get("batch_size"),
                    "windows_per_row": packing["windows_per_row"] if packing else None,
                    "streams": record["backend"].get("num_streams") or 1,
                    "fast_vnni": bool(record["backend"].get("fast_vnni_emulation")),
                    "engine_precision": record["backend"].get("precision"),
                    "samples": record["qsl"]["features"], "samples_per_s": round(sps, 2), "validity": r.get("validity"),
                    "mean_tokens_computed": round(float(lengths.mean()), 1), "peak_rss_mb": record.get("peak_rss_mb"),
                    "gmacs_per_sample": round(macs / 1e9, 3) if macs else None,
                    "precision": ("int8" if prof.int8 else "fp32") if prof else None,
                    "roofline_pct": round(100 * macs * sps / peak.for_precision(prof.int8), 2) if prof else None,
                }
                row["engine_overhead_pct"] = harness_overhead_pct(record)
                if "overhead" in job and test["design"] == "ours" and test["count"] == job["overhead"]["count"]:
                    row.update(overhead_summary(job["overhead"]))
                offline_rows.append(row)
            elif record["scenario"] == "SingleStream":
                latency = r.get("latency_ms", {})
                singlestream_rows.append({
                    "job": label, "queries": r.get("query_count"), "validity": r.get("validity"),
                    "p50_ms": latency.get("p50"), "p90_ms": latency.get("p90"), "p99_ms": latency.get("p99"),
                    "early_stopping_p90_ms": r.get("early_stopping_p90_latency_ms"),
                    "streams": record["backend"].get("num_streams") or 1, "run_dir": record["run_dir"],
                    "fast_vnni": bool(record["backend"].get("fast_vnni_emulation")),
                })
            else:
                server_rows.append(_server_row(label, record))
        for row in job.get("tune", []):
            (length_rows if label == "bucket-lengths" else tune_rows).append(row)

    def find(job: str, design: str = "ours", samples: int | None = None) -> dict | None:
        return next((row for row in offline_rows if row["job"] == job and row["design"] == design
                     and (samples is None or row["samples"] == samples)), None)

    n = results["samples"]
    ours = find("ds-sparse-int8-bucketed", samples=n)
    bucketed_full = find("ds-sparse-int8-bucketed", samples=len(features)) if len(features) != n else ours
    packed = find("ds-sparse-int8-packed", samples=n)
    packed_full = find("ds-sparse-int8-packed", samples=len(features)) if len(features) != n else packed
    # the headline over every feature: our faster configuration, length buckets or packed rows
    full = max((row for row in (bucketed_full, packed_full) if row), key=lambda row: row["samples_per_s"], default=None)
    published = find("ds-sparse-int8-padded", "published-offline")
    v3_design = find("ds-sparse-int8-v3design", "published-v3-offline", samples=(full or ours or {}).get("samples"))
    ort24 = find("ort-dense-fp32-24l")

    server_jobs = list(dict.fromkeys(row["job"] for row in server_rows))
    server_best = {job: best_valid_server([r for r in server_rows if r["job"] == job]) for job in server_jobs}
    # the Server target: the server section's own jobs (the ray section's local/Ray sweeps are compared apart)
    server_ours = best_valid_server([r for r in server_rows if r["design"] == "ours" and not r["job"].startswith(("local-", "ray-"))])
    offline_reference = full or ours
    targets = {
        "offline_samples_per_s_full": full["samples_per_s"] if full else None,
        # over every feature when both ran on every feature (the v3.0 design's padded remainders weigh less)
        "ours_vs_v3_design_offline": _ratio(full or ours, v3_design),
        "ours_vs_published_offline": _ratio(ours, published),
        "ours_vs_ort_fp32_dense_24l": _ratio(ours, ort24),
        # In-run overhead of the headline run over every feature (on the first N features the two streams'
        # shared tail, the last batches running on one stream, weighs ~20x more; the table shows both).
        "harness_overhead_pct": (offline_reference or {}).get("engine_overhead_pct"),
        "server_vs_offline": (round(server_ours["target_qps"] / offline_reference["samples_per_s"], 3)
                              if server_ours and offline_reference else None),
        "peak_rss_mb_full_offline": full.get("peak_rss_mb") if full else None,
    }
    bounds = server_bounds(results["jobs"], length_rows, features,
                           offline_reference["samples_per_s"] if offline_reference else None, server_best)
    own_bound = next((b for b in bounds if b["job"] == "server-ours" and b["kind"] == "isolated"), None)
    in_run_bound = next((b for b in bounds if b["job"] == "server-ours" and b["kind"] == "in-run"), None)
    # the same engine (server-ours's streams and batch) under any scheduling policy, against its own bound
    same_engine = best_valid_server([r for r in server_rows if r["design"] == "ours" and r["job"].startswith("server-ours")
                              and not r["job"].endswith("streams")])
    targets["server_vs_queueing_bound"] = (round(same_engine["target_qps"] / own_bound["max_qps"], 3)
                                           if same_engine and own_bound and own_bound["max_qps"] else None)
    # not a target: the scheduling alone, judged against the bound at the engine speed inside the run
    server_vs_in_run_bound = (round(same_engine["target_qps"] / in_run_bound["max_qps"], 3)
                              if same_engine and in_run_bound and in_run_bound["max_qps"] else None)
    met = {k: (None if v is None else (v <= TARGETS[k] if k in ("harness_overhead_pct", "peak_rss_mb_full_offline")
                                       else v >= TARGETS[k])) for k, v in targets.items()}
    plans = bucket_plans(length_rows, features)
    return {
        "engines": engines_summary(offline_rows, server_rows, singlestream_rows, n, len(features),
                                   results.get("machine") or machine_info()),
        "ray": ray_summary(results["jobs"], offline_rows, server_best, features),
        "two_hosts": two_host_summary(results["jobs"].get(TWO_HOSTS_JOB)),
        "vnni": vnni_summary(offline_rows, singlestream_rows),
        "core_projection": core_projection(results["jobs"], offline_reference, server_ours, features),
        "server_bounds": bounds, "server_vs_in_run_bound": server_vs_in_run_bound,
        "offline": offline_rows, "server": server_rows, "singlestream": singlestream_rows, "tune": tune_rows,
        "bucket_lengths": length_rows,
        "bucket_plans": plans,
        "bucket_choice": bucket_choice(plans, results["config"]),
        "server_best": server_best,
        "offline_reference": offline_reference, "targets": targets,
        "offline_headline": {"configuration": ("packed" if full is packed_full else "bucketed") if full else None,
                             "packed_vs_bucketed": _ratio(packed_full or packed, bucketed_full if packed_full else ours)}, "target_values": TARGETS, "met": met,
        "peak": asdict(peak),
    }


def _server_row(label: str, record: dict) -> dict:
    """One Server test of a job, as the report's Server table shows it."""
    r = record["results"]
    latency = r.get("latency_ms", {})
    return {
        "job": label, "design": record["bench_test"]["design"], "target_qps": r.get("target_qps"),
        "completed_samples_per_s": r.get("samples_per_second"), "validity": r.get("validity"),
        "p50_ms": latency.get("p50"), "p90_ms": latency.get("p90"), "p99_ms": latency.get("p99"),
        "latency_bound_met": r.get("perf_constraints_met"), "early_stopping_met": r.get("early_stopping_met"),
        "query_count": r.get("query_count"),
        "sut_p99_ms": (record.get("sut_latency_ms") or {}).get("p99"), "run_dir": record["run_dir"],
        # Mean time inside the engine per batch in this run, to compare with the isolated
        # single-window times of the queueing bound.
        "engine_ms_per_batch": (round(1000 * record["engine_busy_s"] / record["batches_run"], 2)
                                if record.get("engine_busy_s") and record.get("batches_run") else None),
        "batch_size": record["backend"].get("batch_size"), "peak_rss_mb": record.get("peak_rss_mb"),
        "streams": record["backend"].get("num_streams") or 1,
        "policy": ((record.get("settings") or {}).get("sut_options") or {}).get("server_policy"),
        "invalid_reason": r.get("invalid_reason"),
    }


def _server_points(job: dict) -> list[dict]:
    return [_server_row("", record) for record in _records(job) if record["scenario"] == "Server"]


def best_valid_server(rows: list[dict]) -> dict | None:
    """The highest load of a Server sweep that LoadGen called VALID (latency bound and early stopping both met): a
    point whose p99 held but whose queries were too few for the early-stopping estimate is not a load the machine
    held (the tables show both, and the INVALID point's reason)."""
    valid = [s for s in rows if s["validity"] == "VALID"]
    return max(valid, key=lambda s: s["target_qps"]) if valid else None


def engine_server_job(short: str, policy: str) -> str:
    """Section engines' Server sweep job of an engine (``ds``/``ov``) and policy (aging keeps its old label)."""
    return f"{short}-engine-server" + ("" if policy == "aging" else f"-{policy}")


def auto_check(isa: list[str], deepsparse: dict | None, openvino: dict | None) -> dict:
    """What ``--backend auto`` picks on the CPU the suite ran on, against the engine that was faster there in Offline:
    a disagreement means the rule (harness/engine_choice.py) and docs/running.md need this measurement."""
    rule = rule_for(isa)
    faster = (None if not (deepsparse and openvino) else
              "openvino" if openvino["samples_per_s"] > deepsparse["samples_per_s"] else "deepsparse")
    return {"engine": rule.engine, "cpu_class": rule.cpu_class, "rule_measured": rule.measured,
            "faster_offline": faster, "agrees": None if faster is None else faster == rule.engine}


def engines_summary(offline_rows: list[dict], server_rows: list[dict], singlestream_rows: list[dict],
                    samples: int, features: int, machine: dict) -> dict | None:
    """Section engines: OpenVINO against DeepSparse, each ratio from jobs of one invocation, with the CPU's ISA."""
    def offline(job: str, count: int) -> dict | None:
        return next((r for r in offline_rows if r["job"] == job and r["samples"] == count), None)

    def single(job: str) -> dict | None:
        return next((r for r in singlestream_rows if r["job"] == job), None)

    ds_all, ov_all = offline("ds-engine-offline", features), offline("ov-engine-offline", features)
    ds_first, ov_first = offline("ds-engine-offline", samples), offline("ov-engine-offline", samples)
    if not (ov_all or ov_first):
        return None
    policies = list(dict.fromkeys(r["policy"] for r in server_rows if r["job"].startswith(("ds-engine-server",
                                                                                          "ov-engine-server"))))
    by_policy = {engine: {policy: best_valid_server([r for r in server_rows if r["job"] == engine_server_job(engine, policy)])
                          for policy in policies} for engine in ("ds", "ov")}
    # each engine's best Server load over the policies swept (the default policy's where only it ran)
    server = {engine: max((row for row in rows.values() if row), key=lambda row: row["target_qps"], default=None)
              for engine, rows in by_policy.items()}
    fulls = {engine: next((r for r in server_rows if r["job"] == f"{engine}-engine-server-full"), None)
             for engine in ("ds", "ov")}
    full = fulls["ov"]
    offline_of = {"ds": ds_all, "ov": ov_all}
    ds_single, ov_single = single("ds-engine-singlestream"), single("ov-engine-singlestream")
    variants = {label: _ratio(offline(job, samples), ov_first, digits=3)
                for label, job in (("f32_float_ops", "ov-engine-offline-f32"),
                                   ("sparse_weights", "ov-engine-offline-sparse-weights"),
                                   ("dense_fp32_14l", "ov-dense-fp32-14l"))}
    return {
        "isa": machine.get("isa"), "cpu_model": machine.get("cpu_model"),
        "auto": auto_check(machine.get("isa") or [], ds_all or ds_first, ov_all or ov_first),
        "offline_all": {"deepsparse": ds_all and ds_all["samples_per_s"], "openvino": ov_all and ov_all["samples_per_s"],
                        "openvino_vs_deepsparse": _ratio(ov_all, ds_all, digits=3)},
        "offline_first": {"deepsparse": ds_first and ds_first["samples_per_s"],
                          "openvino": ov_first and ov_first["samples_per_s"],
                          "openvino_vs_deepsparse": _ratio(ov_first, ds_first, digits=3)},
        "openvino_precision": (ov_all or ov_first).get("engine_precision"),
        "server_sweep": {engine: row and {"target_qps": row["target_qps"], "p99_ms": row["p99_ms"]}
                         for engine, row in server.items()},
        "server_sweep_openvino_vs_deepsparse": (round(server["ov"]["target_qps"] / server["ds"]["target_qps"], 3)
                                                if server["ov"] and server["ds"] else None),
        "server_by_policy": {engine: {policy: row and {"target_qps": row["target_qps"], "p99_ms": row["p99_ms"],
                                                       "vs_offline": _share(row, offline_of[engine])}
                                      for policy, row in rows.items()} for engine, rows in by_policy.items()},
        "server_full": {engine: run and {**{k: run[k] for k in ("target_qps", "validity", "p99_ms", "query_count",
                                                               "latency_bound_met", "early_stopping_met", "policy")},
                                        "vs_offline": _share(run, offline_of[engine]) if run["validity"] == "VALID"
                                        else None}
                        for engine, run in fulls.items()},
        "server_full_openvino": full and {k: full[k] for k in ("target_qps", "validity", "p99_ms", "query_count",
                                                               "latency_bound_met", "early_stopping_met")},
        "server_full_vs_offline": (round(full["target_qps"] / ov_all["samples_per_s"], 3)
                                   if full and ov_all and full["validity"] == "VALID" else None),
        "singlestream_p90_ms": {"deepsparse": ds_single and ds_single["p90_ms"],
                                "openvino": ov_single and ov_single["p90_ms"]},
        "singlestream_p90_openvino_vs_deepsparse": (round(ov_single["p90_ms"] / ds_single["p90_ms"], 3)
                                                    if ds_single and ov_single and ds_single["p90_ms"] else None),
        "openvino_variants_vs_default": variants,
    }


def _share(server_row: dict | None, offline_row: dict | None) -> float | None:
    """A Server load as a share of the same engine's Offline samples/s (all features) of the same invocation."""
    if not server_row or not offline_row or not offline_row.get("samples_per_s"):
        return None
    return round(server_row["target_qps"] / offline_row["samples_per_s"], 3)


def vnni_summary(offline_rows: list[dict], singlestream_rows: list[dict]) -> dict | None:
    """Section vnni's pairs: fast emulation / default emulation, Offline samples/s and SingleStream latency."""
    def pick(rows: list[dict], job: str) -> dict | None:
        return next((row for row in rows if row["job"] == job), None)

    offline = [pick(offline_rows, f"vnni-{mode}-offline") for mode in ("default", "fast")]
    single = [pick(singlestream_rows, f"vnni-{mode}-singlestream") for mode in ("default", "fast")]
    if not any(offline + single):
        return None
    default, fast = offline
    summary: dict[str, Any] = {
        "offline_samples": (default or fast or {}).get("samples"),
        "offline_default": default and default["samples_per_s"], "offline_fast": fast and fast["samples_per_s"],
        "offline_speedup": _ratio(fast, default, digits=3),
    }
    for key in ("p50_ms", "p90_ms"):
        before, after = (row and row[key] for row in single)
        summary[f"singlestream_{key}_default"], summary[f"singlestream_{key}_fast"] = before, after
        summary[f"singlestream_{key}_speedup"] = round(before / after, 3) if before and after else None
    return summary


def ray_summary(jobs: dict, offline_rows: list[dict], server_best: dict, features: FeatureSet) -> dict | None:
    """Local vs Ray (same features, model and cores), the placement, and the projection to N nodes."""
    from benchmarks.queueing import service_model
    from benchmarks.scaleout import project

    ray_offline = next((r for r in offline_rows if r["job"] == "ray-offline"), None)
    if ray_offline is None:
        return None
    local = next((r for r in offline_rows if r["job"] == "local-offline" and r["samples"] == ray_offline["samples"]), None)
    backend = (jobs.get("ray-offline") or {}).get("records", [{}])[-1].get("backend", {})
    workers = (backend.get("cluster") or {}).get("workers") or 1
    summary = {
        "offline_local": local["samples_per_s"] if local else None, "offline_ray": ray_offline["samples_per_s"],
        "ray_vs_local": round(ray_offline["samples_per_s"] / local["samples_per_s"], 3) if local else None,
        "workers": workers, "cluster": backend.get("cluster"),
        "round_trip_ms": backend.get("round_trip_ms"), "dispatch_overhead_ms": backend.get("dispatch_overhead_ms"),
        "queued_in_worker_ms": backend.get("queued_in_worker_ms"),
        "server_ray": server_best.get("ray-server"), "server_local": server_best.get("local-server"),
    }
    placement = {}
    for label in ("ray-placement-node", "ray-placement-core"):
        row = next((r for r in offline_rows if r["job"] == label), None)
        if row is not None:
            placement[label.rsplit("-", 1)[1]] = row["samples_per_s"]
    if len(placement) == 2:
        placement["core_vs_node"] = round(placement["core"] / placement["node"], 3)
    summary["placement"] = placement or None
    server_job = jobs.get("ray-server") or {}
    if server_job.get("service_s"):
        # A projected node is this machine: the Ray Offline figure (all its cores), and as many batch-1
        # streams as the Ray Server job's actor ran.
        server_backend = (server_job.get("records") or [{}])[-1].get("backend") or server_job.get("backend", {})
        streams = max(1, server_backend.get("num_streams") or 1) * ((server_backend.get("cluster") or {}).get("workers") or 1)
        model = service_model({int(n): times for n, times in server_job["service_s"].items()}, features.seq_lengths)
        summary["projection"] = project(ray_offline["samples_per_s"], model, SERVER_LATENCY_BOUND_MS / 1000,
                                        servers_per_node=streams)
        summary["projection_streams_per_node"] = streams
        summary["mean_service_ms_through_ray"] = round(1000 * model.mean_s, 2)
    return summary


def core_projection(jobs: dict, offline: dict | None, server_best: dict | None, features: FeatureSet) -> dict | None:
    """Offline and Server projected to machines of 8..192 cores (:func:`benchmarks.scaleout.project_cores`)
    from the headline Offline run and the Server job's single-window service times."""
    from benchmarks.queueing import service_model
    from benchmarks.scaleout import PUBLISHED_AT_SCALE, project_cores

    server = jobs.get("server-ours") or {}
    headline = jobs.get("ds-sparse-int8-bucketed") or {}
    if not offline or not server.get("service_s") or not headline.get("records"):
        return None
    machine_cores = headline["records"][-1]["backend"].get("num_cores") or 1
    backend = server["records"][-1]["backend"] if server.get("records") else server.get("backend", {})
    cores_per_stream = max(1, (backend.get("num_cores") or machine_cores) // (backend.get("num_streams") or 1))
    model = service_model({int(n): t for n, t in server["service_s"].items()}, features.seq_lengths)
    per_core = offline["samples_per_s"] / machine_cores
    return {
        "offline_samples_per_s_per_core": round(per_core, 2), "cores_per_stream": cores_per_stream,
        "mean_service_ms": round(1000 * model.mean_s, 2), "measured_cores": machine_cores,
        "measured_offline": offline["samples_per_s"],
        "measured_server": server_best["target_qps"] if server_best else None,
        "rows": project_cores(per_core, model, cores_per_stream, SERVER_LATENCY_BOUND_MS / 1000),
        "published": list(PUBLISHED_AT_SCALE),
    }


def server_bounds(jobs: dict, length_rows: list[dict], features: FeatureSet, offline_sps: float | None,
                  server_best: dict | None = None) -> list[dict]:
    """The highest Poisson load an ideal FIFO SUT could serve at p99 <= 130 ms (``benchmarks.queueing``),
    for each Server job that timed single windows: with its engine's measured batch-1 latencies on as
    many servers as it has streams; and, once, with every window served alone on the whole machine as fast
    as the headline Offline run processes windows on average (no batching wait: faster than any real SUT
    can serve a single window here, so an upper bound on Server / Offline for FIFO service)."""
    from benchmarks.queueing import max_rate_within_bound, service_model

    models = []
    for label, job in jobs.items():
        if job.get("service_s"):
            measured = {int(length): times for length, times in job["service_s"].items()}
            streams = job["backend"].get("num_streams") or 1
            isolated = service_model(measured, features.seq_lengths)
            models.append((label, "isolated", f"{label}: batch 1, measured single-window latency", streams, isolated))
            # The same service times slowed to the engine time per window inside the job's best valid run:
            # there LoadGen and the SUT threads share the cores with the engine. Measured against this bound,
            # the scheduling alone is judged; against the isolated one, scheduling and that contention.
            best = (server_best or {}).get(label)
            in_run_ms = (best or {}).get("engine_ms_per_batch")
            if in_run_ms and (best or {}).get("batch_size") == 1:
                factor = in_run_ms / 1000 / isolated.mean_s
                slowed = {n: [t * factor for t in times] for n, times in measured.items()}
                models.append((label, "in-run", f"{label}: batch 1, single-window latency x {factor:.2f} (the engine "
                               f"time per window inside its best valid run, {in_run_ms} ms at {best['target_qps']} QPS)",
                               streams, service_model(slowed, features.seq_lengths)))
    offline_speed: dict[int, float] = {}  # the fastest batch measured at each length
    for row in length_rows:
        if row["batch_size"] > 1:
            offline_speed[row["length"]] = max(row["samples_per_s"], offline_speed.get(row["length"], 0.0))
    if models and offline_sps and set(models[0][-1].lengths) <= offline_speed.keys():
        # Relative cost per bucket from the per-length Offline engines, scaled so the mix averages out
        # at the headline Offline samples/s.
        lengths = models[0][-1].lengths
        relative = service_model({n: [1.0 / offline_speed[n]] for n in lengths}, features.seq_lengths)
        scale = 1.0 / offline_sps / relative.mean_s
        models.append((None, "offline-speed", "each window alone at the headline Offline speed (no batching wait)", 1,
                       service_model({n: [scale / offline_speed[n]] for n in lengths}, features.seq_lengths)))
    rows = []
    for job, kind, what, servers, model in models:
        qps = max_rate_within_bound(model, SERVER_LATENCY_BOUND_MS / 1000, servers=servers)
        rows.append({"job": job, "kind": kind, "service": what, "servers": servers, "mean_service_ms": round(1000 * model.mean_s, 2),
                     "bucket_service_ms": {n: round(1000 * float(np.median(t)), 2) for n, t in zip(model.lengths, model.seconds)},
                     "max_qps": round(qps, 2), "utilisation": round(qps * model.mean_s / servers, 3),
                     "vs_offline": round(qps / offline_sps, 3) if offline_sps else None})
    return rows


def overhead_summary(overhead: dict) -> dict:
    """Harness overhead from alternated runs: round i compares harness run i with the mean of the bare
    loops just before and after it. The median over rounds is the figure; the range shows the noise."""
    bare = np.asarray(overhead["bare_samples_per_s"], dtype=float)
    harness = np.asarray(overhead["harness_samples_per_s"], dtype=float)
    neighbours = (bare[:-1] + bare[1:]) / 2
    per_round = 100 * (1 - harness / neighbours)
    return {
        "bare_samples_per_s": round(float(np.median(bare)), 2),
        "bare_spread_pct": round(float(100 * (bare.max() - bare.min()) / np.median(bare)), 2),
        "overhead_pct": round(float(np.median(per_round)), 2),
        "overhead_rounds_pct": [round(float(x), 2) for x in per_round],
    }


def bucket_plans(length_rows: list[dict], features: FeatureSet) -> list[dict]:
    """Every bucket set drawn from the measured lengths (the longest window's length always in), ranked by
    expected Offline samples/s on the dev-set length distribution, with each bucket at its own fastest
    measured batch (the joint choice) and, for comparison, with one batch for all buckets. Time per window
    in a bucket = 1 / the samples/s of the engine at that length and batch. Each plan also carries what its
    engines cost: compile seconds and memory added, summed over the chosen (length, batch) engines."""
    speed = {(row["length"], row["batch_size"]): row for row in length_rows}
    lengths = sorted({length for length, _ in speed})
    longest = features.params.max_seq_length
    if longest not in lengths:
        return []
    batches = sorted({batch for _, batch in speed})
    window_lengths = features.seq_lengths

    def seconds(bucket: int, batch: int) -> float:
        row = speed.get((bucket, batch))
        return 1.0 / row["samples_per_s"] if row else float("inf")

    plans = []
    shorter = [length for length in lengths if length < longest]
    for chosen in itertools.chain.from_iterable(itertools.combinations(shorter, k) for k in range(len(shorter) + 1)):
        buckets = (*chosen, longest)
        share = bucket_shares(buckets, window_lengths)
        best_batch = [min(batches, key=lambda b: seconds(bucket, b)) for bucket in buckets]
        joint_s = sum(f * seconds(bucket, b) for f, bucket, b in zip(share, buckets, best_batch))
        uniform = {b: sum(f * seconds(bucket, b) for f, bucket in zip(share, buckets)) for b in batches}
        engines = [speed[(bucket, b)] for bucket, b in zip(buckets, best_batch)]
        memory = [row.get("rss_added_mb") for row in engines]
        plans.append({
            "buckets": list(buckets), "engines": len(buckets), "batches": best_batch,
            "window_share": [round(float(f), 3) for f in share],
            "expected_samples_per_s": round(1 / joint_s, 2),
            # keyed by str(batch), as JSON keeps it
            "uniform_batch_samples_per_s": {str(b): round(1 / t, 2) for b, t in uniform.items() if np.isfinite(t)},
            "build_s": round(sum(row.get("build_s") or 0.0 for row in engines), 1),
            "rss_added_mb": round(sum(memory), 1) if None not in memory else None,
        })
    padded = next(p for p in plans if p["buckets"] == [longest])["expected_samples_per_s"]
    for plan in plans:
        plan["vs_padded"] = round(plan["expected_samples_per_s"] / padded, 2)
    return sorted(plans, key=lambda p: -p["expected_samples_per_s"])


def bucket_choice(plans: list[dict], config: dict) -> dict | None:
    """The harness's bucket set at its one Offline batch against the best measured plan, and what choosing
    the batch per bucket adds to the harness's bucket set."""
    default = next((p for p in plans if p["buckets"] == list(config.get("buckets") or ())), None)
    batch = config.get("offline_batch")
    if default is None or str(batch) not in default["uniform_batch_samples_per_s"]:
        return None
    at_default = default["uniform_batch_samples_per_s"][str(batch)]
    best = plans[0]
    best_within_engines = max((p for p in plans if p["engines"] <= default["engines"]),
                              key=lambda p: p["expected_samples_per_s"])
    return {
        "default_buckets": default["buckets"], "default_batch": batch, "default_expected": at_default,
        "default_joint_batches": default["batches"], "default_joint_expected": default["expected_samples_per_s"],
        "joint_vs_default": round(default["expected_samples_per_s"] / at_default, 3),
        "best": best, "best_vs_default": round(best["expected_samples_per_s"] / at_default, 3),
        "best_within_default_engines": best_within_engines,
        "best_within_default_engines_vs_default": round(best_within_engines["expected_samples_per_s"] / at_default, 3),
    }


def _ratio(a: dict | None, b: dict | None, digits: int = 2) -> float | None:
    if not a or not b or not b["samples_per_s"]:
        return None
    return round(a["samples_per_s"] / b["samples_per_s"], digits)
