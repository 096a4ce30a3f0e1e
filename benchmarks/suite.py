"""The benchmark suite's scheduling: which jobs each section runs, on which models and settings, in which order.

One invocation measures the figures of docs/performance.md on one set of features. Each job compiles its engine
once in a child process (:mod:`benchmarks.jobs`) and runs its LoadGen tests or bare engine loops there, so jobs
do not share memory or warm caches. A job of a section not measured now is taken from an earlier suite
(``--reuse``), so that one section can be re-measured alone. The raw results go to ``bench.json``;
:mod:`benchmarks.summaries` turns them into table rows and targets, :mod:`benchmarks.report` into ``report.md``
and the plots.

Sections (``--sections``; docs/performance.md describes each): offline (ours against packed rows, the padded model
and the published designs), peers (other engines and precisions), server (latency against offered load,
SingleStream), buckets (an engine per length x batch), tune (batch x streams), vnni (DeepSparse's fast INT8
emulation), ray (a Ray pool on a loopback cluster), engines (OpenVINO beside DeepSparse), hosts (two emulated
hosts). Jobs labelled "ours" run this harness's design on DeepSparse, so that they compare with Neural Magic's
published designs on the same engine. The models are the untrained benchmark models: speed figures are valid,
accuracy figures would not be.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks.openvino_profile import PROFILE_JOBS
from benchmarks.config import SECTIONS, SuiteConfig, SuiteModels
from benchmarks.jobs import BenchJob, LoadGenTest, TuneConfig, run_job_isolated
from benchmarks.scaleout import TWO_HOSTS_JOB, measure_two_hosts
from benchmarks.summaries import best_valid_server, engine_server_job, job_records, server_points, summarize
from cmdline.provenance import provenance
from harness.backends import BackendOptions
from harness.backends.base import EngineOptions
from harness.backends.cluster import RayOptions
from harness.backends.deepsparse_backend import DeepSparseOptions
from harness.backends.openvino_backend import OpenVinoOptions
from harness.bucketing import buckets_for
from harness.errors import ConfigError
from harness.isolated import request_to_spec
from harness.models import ModelInfo
from harness.engine_settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_STREAMS,
    TOKEN_POLICY_MAX_BATCH,
    TOKEN_POLICY_STREAMS,
    powers_of_two_through,
)
from harness.rundir import create_run_dir, mark_complete, mark_incomplete, write_json_atomic
from harness.runner import RunRequest
from harness.scenarios import SutOptions
from harness.loadgen_settings import LoadGenOverrides
from harness.sysinfo import machine_info, software_versions
from squad.data import DatasetFiles
from squad.features import FeatureSet

log = logging.getLogger(__name__)

ENGINE_JOB_PREFIX = {"deepsparse": "ds", "openvino": "ov"}  # section engines' job labels


def _engine_options(backend: str, *, fast_vnni: bool, precision: str, sparse_weights_rate: float | None,
                    perf_counters: bool = False) -> EngineOptions:
    """The engine's own options of a job: the variants the suite compares (DeepSparse's fast VNNI emulation, OpenVINO's
    precision and sparse weights)."""
    if backend == "deepsparse":
        return DeepSparseOptions(fast_vnni_emulation=fast_vnni)
    if backend == "openvino":
        return OpenVinoOptions(precision=precision, sparse_weights_rate=sparse_weights_rate, perf_counters=perf_counters)
    return EngineOptions()


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
             precision: str = "auto", sparse_weights_rate: float | None = None,
             perf_counters: bool = False, until_valid: bool = False) -> dict | None:
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
                                                                  sparse_weights_rate=sparse_weights_rate,
                                                                  perf_counters=perf_counters)),
            sut_options=SutOptions(num_workers=None if ray else streams,  # Ray: the pool's parallelism
                                   batch_timeout_ms=timeout_ms or self.config.server_timeout_ms,
                                   server_policy=server_policy),
            mlperf_conf=self.mlperf_conf, user_conf=self.user_conf, runs_root=self.out_dir / "runs" / label,
            overrides=LoadGenOverrides(), progress=self.progress,
        )
        job = BenchJob(label=label, request=request_to_spec(request, self.feature_cache_dir), tests=tests,
                       bare_loop_count=bare_loop_count, capacity_count=capacity_count, tune=list(tune),
                       tune_count=tune_count, service_profile_count=service_profile_count, until_valid=until_valid)
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
        """Every job of the selected sections, then the summary, the plots and report.md. In order: ours (DeepSparse,
        INT8, length buckets, the default streams x batch) over the first N features alternated with bare loops
        (harness overhead) and over every feature, other (streams, batch) layouts, packed rows, the v3.0 design and
        the padded model under our SUT and the published design; the peers; Server sweeps at fractions of our
        Offline samples/s (with single-window service times for the queueing bound), SingleStream, the published
        Server design; the bucket and tuning grids; then the vnni, ray, engines and hosts sections."""
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
                offline_sps = job_records(ours)[-1]["results"]["samples_per_second"]
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
        self.results["summary"] = summarize(self.results, self.models.all(), self.features)
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
        """Section engines: OpenVINO beside DeepSparse on the same INT8 model (OpenVINO runs its QDQ form), features
        and harness defaults, in adjacent jobs: Offline over every feature, a Server sweep per policy at fractions of
        each engine's own Offline samples/s, one full-length Server run at a share of the highest load its sweeps
        held, SingleStream; OpenVINO's variants (f32 float operations, sparse weights, the dense FP32 model); and
        whether the engine ``--backend auto`` picks on this CPU class was the faster (``summaries.auto_check``)."""
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
            # where the time goes, layer type by layer type: the INT8 model against the dense one (openvino_profile)
            for label, model in ((PROFILE_JOBS["int8"], m.sparse_int8), (PROFILE_JOBS["dense"], m.dense_fp32_14l)):
                self._job(label, "engines", backend="openvino", model=model, scenario="Offline",
                          batch_size=c.offline_batch, buckets=c.buckets, streams=c.offline_streams, tests=first,
                          perf_counters=True)
        server = {"min_duration_ms": c.server_duration_ms, "min_query_count": c.engine_server_min_queries}
        fractions = {"tokens": c.engine_token_server_fractions, "aging": c.engine_server_fractions,
                     "slack": c.engine_server_fractions}
        for engine in ("deepsparse", "openvino"):
            short = ENGINE_JOB_PREFIX[engine]
            sps = (job_records(offline[engine])[-1]["results"]["samples_per_second"]
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
            # full-length runs with the policy whose sweep held the highest VALID load, at shares of that load until
            # one is VALID (a queue that grows over minutes is missed by a 30 s point; find-target searches further)
            held = {policy: best_valid_server(server_points(self.results["jobs"].get(engine_server_job(short, policy))
                                                             or {})) for policy in c.engine_server_policies}
            policy, point = max(((p, h) for p, h in held.items() if h and measuring),
                                key=lambda pair: pair[1]["target_qps"], default=(c.engine_server_policies[0], None))
            label = f"{short}-engine-server-full"
            if c.engine_full_server and (point or label in self.reused):
                duration = ({} if c.engine_full_server_duration_ms is None else
                            {"min_duration_ms": c.engine_full_server_duration_ms,
                             "min_query_count": c.engine_server_min_queries})
                self._job(label, "engines", backend=engine, model=m.sparse_int8, scenario="Server",
                          tests=[LoadGenTest(label=f"Server, full length, policy {policy}, {share:.0%} of the sweep's "
                                             "highest VALID load" + ("" if not duration else " (shortened)"),
                                             overrides={"target_qps": round(share * point["target_qps"], 3),
                                                        **duration})
                                 for share in c.engine_full_server_shares] if point else [],
                          until_valid=True, **self._server_layout(policy))

    def _server_layout(self, policy: str) -> dict:
        """The harness's default Server engine layout for ``policy`` (harness.engine_settings): the tokens policy's calls
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
                sps = job_records(offline["local"])[-1]["results"]["samples_per_second"]
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
        """Section hosts: Offline over the first ``--samples`` features across two emulated
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
