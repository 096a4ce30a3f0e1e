"""Benchmark jobs: one compiled engine, several measurements, in a fresh process.

A job builds its backend once (compiling DeepSparse engines is the slow part), then runs any number of
LoadGen tests of one scenario and mode. Harness overhead is measured two ways: within every run (time
inside the engine vs LoadGen's duration, see ``harness.run_record.harness_overhead_pct``), and by
alternating the bare engine loop with the first test over the same features (bare, test, bare, ..., bare;
after the other tests): each test run is compared with the mean of the bare loops on either side, so slow
drift of a shared machine largely cancels. LoadGen reads conf files once per process (see ``harness.isolated``),
so the tests share one TestSettings read from mlperf.conf/user.conf and differ only in their overrides (count,
duration, target QPS). A tuning job instead builds one engine per configuration and measures each with the bare
loop only.

``python -m benchmarks.jobs JOB.json RESULT.json``
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.isolated import run_module
from harness.sysinfo import current_rss_mb, peak_rss_mb

log = logging.getLogger(__name__)


@dataclass
class LoadGenTest:
    label: str
    overrides: dict  # LoadGenOverrides fields
    count: int | None = None  # the first N features; None: all
    design: str = "ours"  # benchmarks.designs.DESIGNS key
    capacity_fraction: float | None = None  # Server: target QPS = fraction x the job's measured capacity


@dataclass
class TuneConfig:
    batch_size: int
    num_streams: int = 1
    length: int | None = None  # engine sequence length; None: the job's tune_length


@dataclass
class BenchJob:
    label: str
    request: dict  # harness.isolated.request_to_spec of the base request (backend, model, options, ...)
    tests: list[LoadGenTest] = field(default_factory=list)
    bare_loop_count: int = 0  # overhead: bare loops over the first N features, alternated with the first test
    overhead_rounds: int = 3  # times the first test runs between bare loops (when bare_loop_count)
    capacity_count: int = 0  # bare loop over N features first; its samples/s sizes capacity_fraction tests
    # Server tests tried in order until one is VALID. Not stopped early: LoadGen has no abort call, so a stopped run
    # ends its process (harness.runner), which would lose the job's other records
    until_valid: bool = False
    service_profile_count: int = 0  # single-window latencies of up to N windows per bucket (queueing bound)
    tune: list[TuneConfig] = field(default_factory=list)  # tuning job: bare loops only
    tune_length: int = 192  # tuning engines run this sequence length (windows up to it)
    tune_count: int = 256


def run_job_isolated(job: BenchJob) -> dict:
    """Run ``job`` in a child process (``python -m benchmarks.jobs``); returns its result."""
    with tempfile.TemporaryDirectory(prefix="obert-bench-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(asdict(job)))
        _, outcome = run_module("benchmarks.jobs", [str(job_path), str(result_path)], result_path=result_path)
        if outcome is None:
            raise HarnessError(f"benchmark job {job.label!r} ended without a result (see its log above)")
    if not outcome["ok"]:
        raise HarnessError(f"benchmark job {job.label!r} failed: {outcome['error']}")
    return outcome["result"]


def execute_job(job: BenchJob) -> dict:
    from harness.backends import create_backend
    from benchmarks.bare import bare_engine_loop, single_window_latencies
    from benchmarks.designs import DESIGNS
    from harness.isolated import request_from_spec
    from harness.runner import execute_run
    from harness.loadgen_settings import LoadGenOverrides, conf_test_settings
    from squad.features import select_features

    base = request_from_spec(job.request)
    if job.tune:
        return _execute_tuning(job, base)
    started = time.perf_counter()
    backend = create_backend(base.backend, base.model, base.backend_options, progress=base.progress)
    if base.sut_options.num_workers is None:  # a Ray pool: as many workers as it takes batches at once
        base = replace(base, sut_options=replace(base.sut_options, num_workers=backend.parallelism))
    result: dict = {"label": job.label, "build_s": round(time.perf_counter() - started, 1),
                    "backend": backend.describe(), "records": []}
    try:
        features = base.features
        if job.capacity_count:
            result["capacity_samples_per_s"] = bare_engine_loop(
                backend, features, np.arange(min(job.capacity_count, len(features))), workers=base.sut_options.num_workers)
        if job.service_profile_count:
            result["service_s"] = {str(length): times for length, times in single_window_latencies(
                # one window per computing stream: a service time, not a wait in a worker's line
                backend, features, job.service_profile_count, workers=backend.compute_streams).items()}
        settings = conf_test_settings(base.scenario, base.mode, mlperf_conf=base.mlperf_conf, user_conf=base.user_conf)

        def run_test(test: LoadGenTest) -> dict:
            overrides = dict(test.overrides)
            if test.capacity_fraction is not None:
                overrides["target_qps"] = round(test.capacity_fraction * result["capacity_samples_per_s"], 3)
            request = replace(
                base, features=select_features(features, test.count) if test.count else features,
                overrides=LoadGenOverrides(**overrides), sut_class=DESIGNS[test.design],
            )
            log.info("%s: %s", job.label, test.label)
            record = execute_run(request, backend=backend, conf_settings=settings)
            record["bench_test"] = asdict(test)
            return record

        # The overhead test (the first) runs last, alternated with bare loops, so the other tests' peak
        # memory (a high-water mark) is that of their own runs, not of the loops' extra inputs.
        overhead_test = job.tests[0] if job.bare_loop_count and job.tests else None
        for test in job.tests[1:] if overhead_test else job.tests:
            result["records"].append(run_test(test))
            if job.until_valid and result["records"][-1]["results"].get("validity") == "VALID":
                break
        if overhead_test is not None:
            bare_indices = np.arange(min(job.bare_loop_count, len(features)))
            if overhead_test.count != bare_indices.size:
                raise HarnessError(f"job {job.label!r}: the overhead test must cover the bare loop's "
                                   f"{bare_indices.size} features, not {overhead_test.count}")
            bare = [bare_engine_loop(backend, features, bare_indices, workers=base.sut_options.num_workers)]
            harness_sps = []
            for round_number in range(max(1, job.overhead_rounds)):
                record = run_test(overhead_test)
                harness_sps.append(float(record["results"]["samples_per_second"]))
                if round_number == 0:  # the table row; later rounds only add their samples/s
                    result["records"].insert(0, record)
                bare.append(bare_engine_loop(backend, features, bare_indices, workers=base.sut_options.num_workers))
            result["overhead"] = {"count": int(bare_indices.size), "bare_samples_per_s": bare,
                                  "harness_samples_per_s": harness_sps}
    finally:
        backend.close()
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _execute_tuning(job: BenchJob, base) -> dict:
    """Samples/s of the bare loop for each (batch size, streams) on one engine length."""
    import onnx

    from harness.backends import create_backend
    from harness.backends.bucketed import write_sequence_variant
    from benchmarks.bare import bare_engine_loop

    features = base.features
    proto = onnx.load(str(base.model.onnx_path))
    rows = []
    with tempfile.TemporaryDirectory(prefix="obert-tune-") as tmp:
        variants: dict[int, object] = {}
        for config in job.tune:
            length = config.length or job.tune_length
            if length not in variants:
                variants[length] = write_sequence_variant(base.model, proto, length, Path(tmp))
            # Windows that fit the length, cut to it: each engine runs full-width batches of real windows.
            # An engine's speed at a length does not depend on which windows it runs, so where fewer than
            # tune_count fit (64 tokens) they are repeated: every configuration runs as many batches.
            fitting = np.flatnonzero(features.seq_lengths <= length)
            fitting = np.resize(fitting if fitting.size else np.arange(len(features)), job.tune_count)
            options = replace(base.backend_options, batch_size=config.batch_size, num_streams=config.num_streams,
                              sequence_buckets=None)  # DeepSparse's scheduler follows the streams
            rss_before = current_rss_mb()
            started = time.perf_counter()
            backend = create_backend(base.backend, variants[length], options)
            build_s = time.perf_counter() - started
            try:
                sps = bare_engine_loop(backend, features, fitting, workers=config.num_streams, length=length)
                rss_after = current_rss_mb()  # after running: the engine's buffers are allocated by now
            finally:
                backend.close()
            log.info("tune %s: length %d, batch %d, %d stream(s): %.2f samples/s", job.label, length,
                     config.batch_size, config.num_streams, sps)
            # memory the engine added, built and run (approximate: the allocator may reuse what a closed engine freed)
            rss_added = round(rss_after - rss_before, 1) if rss_before is not None and rss_after is not None else None
            rows.append({**asdict(config), "length": length, "samples_per_s": round(sps, 2),
                         "windows": int(fitting.size), "build_s": round(build_s, 1), "rss_added_mb": rss_added})
    return {"label": job.label, "tune": rows, "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str]) -> int:
    job_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(job_path.read_text())
    job = BenchJob(**{**spec, "tests": [LoadGenTest(**t) for t in spec["tests"]],
                      "tune": [TuneConfig(**t) for t in spec["tune"]]})
    from harness.isolated import write_outcome

    return write_outcome(result_path, "result", lambda: execute_job(job))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    sys.exit(main(sys.argv[1:]))
