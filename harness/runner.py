"""One LoadGen run, start to finish: run directory, settings, QSL + SUT over a backend, LoadGen, results.

A run never hangs on a backend fault: the SUT answers everything empty once the backend fails, and
if LoadGen still has not returned after ``fault_grace_s`` (Server and SingleStream keep issuing until
their minimum duration), the run is recorded as failed and the process exits hard, leaving the
``INCOMPLETE`` marker and whatever LoadGen had written. A Server run whose p99 latency bound is already
lost can be stopped the same way (``abort_when_invalid``); Ctrl-C and SIGTERM mark the run interrupted
(see :mod:`harness.interrupts`).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from harness import __version__
from harness.accuracy import evaluate_accuracy_log
from harness.backends import Backend, BackendOptions, create_backend
from harness.engine_choice import summary_tag
from harness.errors import BackendFault, ConfigError, DiskFull, RunStopped
from harness.interrupts import describe as describe_interrupt
from harness.loadgen_logs import (ACCURACY_LOG, DETAIL_LOG, check_logs_complete, expected_bytes, performance_metrics,
                                  read_detail_log)
from harness.machine_load import LoadMonitor
from harness.models import ModelInfo, check_model_fits, check_vocab_fits
from harness.qsl import SquadQSL
from harness.rundir import (RUN_JSON, check_free_space, create_run_dir, disk_full_error, is_no_space, mark_complete,
                            mark_incomplete, naming, release_reserve, write_atomic, write_json_atomic)
from harness.scenarios import SutOptions, create_sut
from harness.settings import ConfSettings, LoadGenOverrides, build_test_settings, issue_plan
from squad.features import FeatureSet
from harness.sysinfo import harness_commit, machine_info, peak_rss_mb, software_versions
from squad.data import DATA_LABELS, DATA_NOTES, SAMPLE, DatasetFiles

log = logging.getLogger(__name__)

SAMPLE_LATENCIES_FILE = "sample_latencies_ms.npy"
UNTRAINED_NOTE = (
    "model weights are UNTRAINED (architecture-faithful benchmark model): accuracy figures are "
    "meaningless, speed figures are valid"
)


@dataclass
class RunRequest:
    scenario: str
    mode: str
    backend: str
    model: ModelInfo
    features: FeatureSet
    dataset: DatasetFiles
    backend_options: BackendOptions
    sut_options: SutOptions
    mlperf_conf: Path
    user_conf: Path
    runs_root: Path
    overrides: LoadGenOverrides = field(default_factory=LoadGenOverrides)
    audit_config: Path | None = None  # compliance tests (TEST01) only
    fault_grace_s: float = 10.0
    progress: bool = True
    abort_when_invalid: bool = False  # Server: stop once the p99 bound is provably missed
    requested_count: int | None = None  # --count as given (it may exceed the dataset's features)
    backend_wrapper: object | None = None  # callable(backend) -> backend, for fault injection
    sut_class: type | None = None  # another SUT design (benchmarks); None: the scenario's own
    backend_choice: dict | None = None  # how `backend` was chosen (harness.engine_choice.EngineChoice.as_dict)


def harness_overhead_pct(record: dict) -> float | None:
    """Harness overhead of an Offline run as a share of engine time: LoadGen's measured duration (samples
    answered / samples per second) times the SUT's worker count, less the time spent inside the backend's
    ``predict`` (``engine_busy_s``), over that engine time. Both come from the same run, so a drifting
    machine cannot enter the figure the way it does when comparing with a separate bare engine loop."""
    busy = record.get("engine_busy_s")
    samples = record.get("samples_completed")
    if samples is None:  # records written before samples_completed existed: a pinned query count tells
        overrides = (record.get("settings") or {}).get("overrides") or {}
        if overrides.get("min_query_count") == overrides.get("max_query_count"):
            samples = overrides.get("max_query_count")
    sps = (record.get("results") or {}).get("samples_per_second")
    if not busy or not samples or not sps:
        return None
    workers = ((record.get("settings") or {}).get("sut_options") or {}).get("num_workers", 1)
    wall = samples / float(sps)
    return round(100 * (wall * workers - busy) / busy, 2)


def execute_run(request: RunRequest, *, backend: Backend | None = None,
                conf_settings: ConfSettings | None = None) -> dict:
    """Run one scenario/mode; returns the run record (also written to ``run.json``).

    ``backend``: an engine built by the caller for several runs (benchmarks; left open here).
    ``conf_settings``: TestSettings already read from the conf files for this scenario
    (:func:`harness.settings.conf_test_settings`): LoadGen must read the conf files only once per process,
    or every later test logs "Multiple conf files are used"; this request's mode and overrides are applied.
    Raises :class:`BackendFault` (after writing the record) when the backend failed during the run."""
    r = request
    # Everything that can reject the input happens before a run directory exists.
    check_model_fits(r.model, r.features.params.max_seq_length)
    vocab_check = check_vocab_fits(r.model, r.dataset.vocab, sample=r.dataset.kind == SAMPLE)
    if conf_settings is None:
        settings, adjustments = build_test_settings(
            r.scenario, r.mode, mlperf_conf=r.mlperf_conf, user_conf=r.user_conf,
            total_count=len(r.features), overrides=r.overrides,
        )
    else:
        settings, adjustments = conf_settings.for_run(len(r.features), r.overrides, mode=r.mode)
    check_free_space(r.runs_root, expected_bytes(r.mode, len(r.features), r.features.params.max_seq_length),
                     f"a {r.mode} run of {len(r.features)} features")
    buckets = r.backend_options.sequence_buckets
    if buckets and buckets[-1] != r.features.params.max_seq_length:
        raise ConfigError(f"--buckets {','.join(map(str, buckets))}: the largest bucket must be the window length "
                          f"{r.features.params.max_seq_length}, so that every window fits")
    owns_backend = backend is None
    if owns_backend:
        backend = create_backend(r.backend, r.model, r.backend_options, progress=r.progress)
    if r.backend_wrapper is not None:
        backend = r.backend_wrapper(backend)
    if r.sut_options.num_workers is None:  # as many SUT workers as the backend runs batches at once
        r = replace(r, sut_options=replace(r.sut_options, num_workers=backend.parallelism))
    warmup_batches = warm_up(backend, r.features)

    run_dir = create_run_dir(r.runs_root, r.backend, r.scenario, r.mode, reserve=True)
    log.info("run directory: %s", run_dir)
    record = _base_record(r, run_dir)
    record["dataset"]["vocab_check"] = vocab_check
    if vocab_check["note"]:
        record["notes"].append(vocab_check["note"])
    record["backend"] = backend.describe()
    record["settings"]["harness_adjustments"] = adjustments
    if r.mode == "performance":
        record["settings"]["loadgen_plan"] = issue_plan(r.scenario, settings).as_dict()
    record["warmup_batches"] = warmup_batches
    try:
        for conf, name in ((r.mlperf_conf, "mlperf.conf"), (r.user_conf, "user.conf")):
            with naming(run_dir / name):
                shutil.copy2(conf, run_dir / name)
        write_json_atomic(run_dir / RUN_JSON, record)
        return _run_loadgen(r, backend, settings, run_dir, record, owns_backend)
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM: keep what there is, say why it stopped
        reason = describe_interrupt(interrupt)
        mark_incomplete(run_dir, reason)
        record.update(status="interrupted", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), interrupted=reason)
        record["summary"] = summary_line(record)
        _write_final_record(run_dir, record)
        raise
    except (OSError, DiskFull) as exc:  # every write of the run ends here when the device is full
        if not isinstance(exc, DiskFull) and not is_no_space(exc):
            raise
        raise _record_disk_full(run_dir, record,
                                exc if isinstance(exc, DiskFull) else disk_full_error(exc, run_dir)) from None


def _write_final_record(run_dir: Path, record: dict) -> None:
    """The run's record, written for the last time: the space reserve goes first (a full device then still
    takes it)."""
    release_reserve(run_dir)
    write_json_atomic(run_dir / RUN_JSON, record)


def _record_disk_full(run_dir: Path, record: dict, error: DiskFull) -> DiskFull:
    """Mark a run whose device filled up as failed, as far as the device still allows; returns the error to
    raise (it says whether run.json could record it)."""
    record.update(status="failed", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    record["fault"] = {"error": f"DiskFull: {error}", "kind": "disk full",
                       "samples_completed": record.get("samples_completed")}
    record["summary"] = summary_line(record)
    try:
        _write_final_record(run_dir, record)
        recorded = f"the run is marked failed in {run_dir / RUN_JSON}"
    except OSError:
        recorded = f"{run_dir / RUN_JSON} could not record the failure either"
    try:
        mark_incomplete(run_dir, f"no space left on device ({error})")
    except OSError:
        pass  # the marker from the run's start stays
    return DiskFull(f"{error}; {recorded}")


def _run_loadgen(r: RunRequest, backend: Backend, settings, run_dir: Path, record: dict, owns_backend: bool) -> dict:
    qsl = SquadQSL(r.features, settings.performance_sample_count_override or None)
    sut = (r.sut_class(backend, qsl, r.sut_options) if r.sut_class is not None
           else create_sut(r.scenario, backend, qsl, r.sut_options))
    if r.sut_class is not None:
        record["sut_design"] = r.sut_class.__name__

    import mlperf_loadgen as lg

    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(run_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    # LoadGen reads audit.config from the working directory by default; name a path explicitly so
    # a stray file there can never turn a normal run into a compliance run.
    audit_path = run_dir / "audit.config"
    if r.audit_config is not None:
        shutil.copy2(r.audit_config, audit_path)

    monitor = LoadMonitor(helper_pids=backend.helper_process_ids())
    at_start = monitor.start()
    if at_start.busy_at_start:
        log.warning("the machine is busy at the start of the run (%.2f cores used by other processes%s): speed "
                    "figures will not be representative", at_start.other_cores_at_start,
                    "; " + "; ".join(at_start.competing_commands[:3]) if at_start.competing_commands else "")
    watch = LatencyWatch.for_settings(r, settings)
    started = time.time()
    loadgen_thread = threading.Thread(
        target=lg.StartTestWithLogSettings,
        args=(sut.handle, qsl.handle, settings, log_settings, str(audit_path)),
        name="loadgen", daemon=True,
    )
    loadgen_thread.start()
    _wait_with_progress(loadgen_thread, sut, r, run_dir, record, watch)
    elapsed = time.time() - started
    load = monitor.stop()
    if sut.fault is None and sut.abandoned is None:
        check_logs_complete(run_dir, r.mode)  # LoadGen ignores write errors: a full device cuts its logs silently
    sut.destroy()
    qsl.destroy()
    record["backend"] = backend.describe()  # again: a Ray pool records lost workers and its round trips
    if owns_backend:
        backend.close()

    record["duration_s"] = round(elapsed, 2)
    record["peak_rss_mb"] = peak_rss_mb()
    record["batches_run"] = sut.batches_run
    record["sut"] = sut.describe()
    record["engine_busy_s"] = round(sut.engine_busy_s, 3)
    record["samples_completed"] = sut.completed  # a compliant Offline run repeats features
    record["machine_load"] = load.as_dict()
    if record["backend"].get("degraded"):
        record["notes"].append("DEGRADED: Ray workers were lost during the run and their batches ran again on the "
                               f"others: {'; '.join(e['error'] for e in record['backend'].get('events', []))}")
    if load.warning:
        record["notes"].append(load.warning)
        log.warning("%s", load.warning)
    if watch is not None:
        record["latency_watch"] = watch.as_dict()
        if watch.lost_note:
            record["notes"].append(watch.lost_note)
    if sut.latencies_s:
        # Issue-to-completion time of every sample as the SUT saw it (LoadGen's figures are the official
        # ones); kept for latency-distribution plots.
        latencies_ms = np.asarray(sut.latencies_s, dtype=np.float64) * 1000.0
        buffer = io.BytesIO()
        np.save(buffer, latencies_ms.astype(np.float32))
        write_atomic(run_dir / SAMPLE_LATENCIES_FILE, buffer.getvalue())
        record["sut_latency_ms"] = {
            "samples": int(latencies_ms.size),
            **{f"p{q}": round(float(np.percentile(latencies_ms, q)), 3) for q in (50, 90, 99)},
        }
    if sut.fault is not None:
        _fail(run_dir, record, sut)
        raise BackendFault(
            f"the {r.backend} backend failed during the run ({type(sut.fault).__name__}: {sut.fault}); "
            f"partial logs kept in {run_dir}"
        )
    if sut.abandoned is not None:
        _record_stopped(run_dir, record, sut, watch)
        raise RunStopped(f"{record['summary']}")

    detail = read_detail_log(run_dir / DETAIL_LOG)
    record["results"] = performance_metrics(detail, r.scenario) if r.mode == "performance" else {}
    short = offered_load_note(r.scenario, record["results"])
    if short:
        record["notes"].append(short)
    if r.scenario == "Offline" and r.mode == "performance":
        record["harness_overhead_pct"] = harness_overhead_pct(record)
    record["loadgen"] = {"version": detail.get("loadgen_version"), "errors": detail.get("errors", [])}
    if record["loadgen"]["errors"]:
        record["notes"].append(f"LoadGen logged errors (the submission checker rejects such a run): "
                               f"{'; '.join(record['loadgen']['errors'])}")
    if r.mode == "accuracy":
        record["accuracy"] = evaluate_accuracy_log(run_dir / ACCURACY_LOG, r.features, run_dir)
    record["status"] = "complete"
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["summary"] = summary_line(record)
    _write_final_record(run_dir, record)
    mark_complete(run_dir)
    return record


def warm_up(backend: Backend, features: FeatureSet) -> int:
    """Run one batch per engine (each length bucket) before LoadGen starts, so that first-use costs
    (memory allocation, lazy initialisation) are not timed; returns the number of batches run."""
    lengths = features.seq_lengths
    buckets = backend.sequence_buckets or (features.params.max_seq_length,)
    lower, batches = 0, 0
    for bucket in buckets:
        members = np.flatnonzero((lengths > lower) & (lengths <= bucket))[: backend.batch_size]
        lower = bucket
        if members.size:
            backend.predict(features.input_ids[members], features.input_mask[members], features.segment_ids[members])
            batches += 1
    return batches


def _base_record(r: RunRequest, run_dir: Path) -> dict:
    notes = []
    if r.model.trained is False:
        notes.append(UNTRAINED_NOTE)
    if r.dataset.kind in DATA_NOTES:
        notes.append(DATA_NOTES[r.dataset.kind])
    if r.requested_count is not None and r.requested_count > len(r.features):
        notes.append(f"--count {r.requested_count} asks for more features than the dataset has: all "
                     f"{len(r.features)} are used")
    overrides = r.overrides.given()
    if overrides:
        notes.append(f"LoadGen settings overridden on the command line ({', '.join(overrides)}): not a "
                     "compliant MLPerf run")
    return {
        "status": "running",
        "run_dir": str(run_dir),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # pid: the process that ran it (one process runs a scenario's tests on one engine: harness.isolated)
        "harness": {"version": __version__, "commit": harness_commit(), "pid": os.getpid()},
        "scenario": r.scenario,
        "mode": r.mode,
        "backend": {"backend": r.backend},
        "backend_choice": r.backend_choice,
        "model": r.model.describe(),
        "dataset": r.dataset.describe(),
        "qsl": {
            "features": len(r.features),
            "requested_count": r.requested_count,
            "examples": len({int(i) for i in r.features.example_index}),
            "fingerprint": r.features.fingerprint,
            **asdict(r.features.params),
        },
        "settings": {
            "backend_options": asdict(r.backend_options),
            "sut_options": asdict(r.sut_options),
            "overrides": overrides,
            "mlperf_conf": str(r.mlperf_conf),
            "user_conf": str(r.user_conf),
            "audit_config": str(r.audit_config) if r.audit_config else None,
        },
        "machine": machine_info(),
        "software": software_versions(),
        "notes": notes,
    }


class LatencyWatch:
    """Server performance runs: counts samples over the latency bound as they complete, and knows when so
    many are late that p99 over the whole run can no longer meet the bound (the run will be INVALID).

    LoadGen issues queries until ``min_duration`` has passed at ``target_qps`` (and ``min_query_count`` are
    issued); the run's query count is taken generously (expected + 5 standard deviations of the Poisson
    count), so "lost" is only declared when more than 1% of even that many queries are already late."""

    def __init__(self, bound_s: float, expected_queries: float, percentile: float) -> None:
        self.bound_s = bound_s
        self.total_upper = int(expected_queries + 5 * expected_queries ** 0.5) + 1
        self.allowed_late = int((1.0 - percentile) * self.total_upper)
        self.late = 0
        self.lost_at: float | None = None  # seconds into the run when the bound was lost
        self._scanned = 0

    @classmethod
    def for_settings(cls, r: RunRequest, settings) -> LatencyWatch | None:
        if r.scenario != "Server" or r.mode != "performance":
            return None
        expected = max(float(settings.min_query_count),
                       float(settings.server_target_qps) * settings.min_duration_ms / 1000.0)
        return cls(settings.server_target_latency_ns / 1e9, expected, settings.server_target_latency_percentile)

    def update(self, latencies_s: list, elapsed_s: float) -> bool:
        """Count the newly completed samples; True exactly when the bound has just been lost."""
        end = len(latencies_s)
        self.late += sum(1 for latency in latencies_s[self._scanned:end] if latency > self.bound_s)
        self._scanned = end
        if self.lost_at is None and self.late > self.allowed_late:
            self.lost_at = elapsed_s
            return True
        return False

    @property
    def lost_note(self) -> str | None:
        if self.lost_at is None:
            return None
        return (f"the latency bound was lost {self.lost_at:.0f} s into the run: {self.late} samples over "
                f"{self.bound_s * 1000:.0f} ms, more than the {self.allowed_late} that p99 allows of the at most "
                f"{self.total_upper} queries the run issues; the run cannot be VALID")

    def as_dict(self) -> dict:
        return {"bound_ms": self.bound_s * 1000, "late_samples": self.late, "allowed_late": self.allowed_late,
                "queries_upper_bound": self.total_upper, "lost_after_s": self.lost_at}


def _wait_with_progress(thread: threading.Thread, sut, r: RunRequest, run_dir: Path, record: dict,
                        watch: LatencyWatch | None) -> None:
    """Show progress while LoadGen runs (completed / issued, the queue, late samples); enforce the fault
    grace period; stop a Server run whose latency bound is lost when asked to."""
    from tqdm import tqdm

    bar = tqdm(
        desc=f"{r.scenario} {r.mode}", unit="sample", disable=not r.progress or None,
        dynamic_ncols=True, leave=True, file=sys.stderr,
    )
    started = time.monotonic()
    ended_at: float | None = None  # when the SUT stopped answering for real (fault or stop)
    try:
        while thread.is_alive():
            thread.join(timeout=0.5)
            if sut.issued and bar.total != sut.issued:
                bar.total = sut.issued
            bar.update(sut.completed - bar.n)
            postfix = {"queued": sut.issued - sut.completed}
            if watch is not None:
                if watch.update(sut.latencies_s, time.monotonic() - started):
                    _latency_bound_lost(watch, sut, r, bar)
                postfix["late"] = watch.late
            bar.set_postfix(postfix, refresh=False)
            if sut.fault is not None or sut.abandoned is not None:
                ended_at = ended_at or time.monotonic()
                if thread.is_alive() and time.monotonic() - ended_at > r.fault_grace_s:
                    bar.close()
                    _end_process(run_dir, record, sut, r, watch)
    finally:
        bar.close()


def _latency_bound_lost(watch: LatencyWatch, sut, r: RunRequest, bar) -> None:
    message = watch.lost_note
    if r.abort_when_invalid:
        bar.write(f"WARNING: {message}; stopping (--abort-when-invalid)", file=sys.stderr)
        sut.abandon(message)
    else:
        bar.write(f"WARNING: {message}. Ctrl-C ends it now (the run is kept, marked interrupted); "
                  "--abort-when-invalid stops such runs by itself", file=sys.stderr)


def _end_process(run_dir: Path, record: dict, sut, r: RunRequest, watch: LatencyWatch | None) -> None:
    """LoadGen keeps issuing until its minimum duration and has no abort call: record the run and exit."""
    from harness.interrupts import exit_now

    if sut.fault is not None:
        _fail(run_dir, record, sut, note="LoadGen did not return within the fault grace period; the process was ended")
        log.error("backend fault and LoadGen still running after %.0f s: exiting; partial logs in %s",
                  r.fault_grace_s, run_dir)
        exit_now(BackendFault.exit_status)
    _record_stopped(run_dir, record, sut, watch)
    print(record["summary"])
    exit_now(RunStopped.exit_status)


def _record_stopped(run_dir: Path, record: dict, sut, watch: LatencyWatch | None) -> None:
    """A run stopped because it could no longer be VALID: INVALID with the reason, marked incomplete."""
    record.update(status="stopped", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  results={"validity": "INVALID", "invalid_reason": sut.abandoned},
                  samples_completed=sut.completed, latency_watch=watch.as_dict() if watch else None)
    record["notes"].append(f"stopped early (--abort-when-invalid): {sut.abandoned}")
    record["summary"] = summary_line(record)
    _write_final_record(run_dir, record)
    mark_incomplete(run_dir, f"stopped early because the run could no longer be VALID: {sut.abandoned}")


def _fail(run_dir: Path, record: dict, sut, note: str | None = None) -> None:
    record["status"] = "failed"
    record["fault"] = {
        "error": f"{type(sut.fault).__name__}: {sut.fault}",
        "traceback": sut.fault_traceback,
        "samples_completed": sut.completed,
        "note": note,
    }
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["summary"] = summary_line(record)
    _write_final_record(run_dir, record)
    mark_incomplete(run_dir, f"the backend failed: {record['fault']['error']}")


FIND_TARGET = "`python -m harness find-target` finds this machine's targets and writes them as a user.conf"
SERVER_FAR_INSIDE_BOUND = 0.5  # a VALID Server run whose p99 is under this share of the bound: its target is low


def offered_load_note(scenario: str, results: dict) -> str | None:
    """What to set when the load LoadGen was told to expect is not this machine's (user.conf's targets are one
    machine's; LoadGen's own advice names no value): an engine that outran it (the run ended before its minimum
    duration), a Server target it cannot hold or holds far inside the bound."""
    if scenario == "Server":
        p99, bound = (results.get("latency_ms") or {}).get("p99"), results.get("target_latency_ms")
        if results.get("perf_constraints_met") is False:
            return (f"the Server run did not hold the {bound} ms bound at {results.get('target_qps')} QPS: this "
                    f"machine's Server target is lower; {FIND_TARGET}")
        if results.get("validity") == "VALID" and p99 is not None and bound and p99 < SERVER_FAR_INSIDE_BOUND * bound:
            return (f"the Server run held p99 {p99} ms, far inside the {bound} ms bound, at {results.get('target_qps')} "
                    f"QPS: user.conf's Server target is likely another machine's; {FIND_TARGET}")
        return None
    if results.get("min_duration_met") is not False:
        return None
    if scenario == "Offline" and results.get("samples_per_second"):
        return (f"the run ended before the minimum duration (INVALID): this engine ran {results['samples_per_second']:.1f} "
                f"samples/s, more than the Offline load LoadGen was told to expect; set bert.Offline.target_qps = "
                f"{results['samples_per_second']:.0f} in user.conf (or --target-qps) so that it issues enough samples; "
                f"{FIND_TARGET}")
    if scenario == "SingleStream" and (results.get("latency_ms") or {}).get("p50"):
        expected = max(results["latency_ms"]["p50"] / 2, 0.001)
        return (f"the run ran out of queries before the minimum duration (INVALID): its median latency "
                f"{results['latency_ms']['p50']:.3g} ms is below the expected one; set bert.SingleStream.target_latency "
                f"= {expected:.3g} in user.conf (or --expected-latency-ms) so that LoadGen generates enough")
    return None


def summary_line(record: dict) -> str:
    """One line a person reads at the end of a run."""
    backend = record["backend"].get("backend") + summary_tag(record.get("backend_choice"))
    packing = record["backend"].get("packing")
    precision = record["backend"].get("precision")  # what the engine executed, where it reports it (OpenVINO)
    head = (f"[{record['status'].upper()}] {backend}{' packed' if packing else ''}{f' {precision}' if precision else ''} "
            f"{record['scenario']} {record['mode']}")
    parts = [head]
    results = record.get("results") or {}
    if record["status"] == "stopped":
        parts.append(f"INVALID: {results.get('invalid_reason')}")
    elif record["mode"] == "performance" and results:
        sps = results.get("samples_per_second")
        latency = results.get("latency_ms", {})
        if record["scenario"] == "Offline":
            parts.append(f"{sps:.2f} samples/s" if sps is not None else "no throughput")
        elif record["scenario"] == "Server":
            parts.append(
                f"{results.get('target_qps')} target QPS, p99 {latency.get('p99')} ms "
                f"(bound {results.get('target_latency_ms')} ms), {sps} samples/s completed"
            )
        else:
            parts.append(f"p90 {latency.get('p90')} ms, {sps} samples/s")
        parts.append(str(results.get("validity")))
    accuracy = record.get("accuracy")
    if accuracy:
        parts.append(f"F1 {accuracy['f1']:.3f} EM {accuracy['exact_match']:.3f}")
    if (record.get("loadgen") or {}).get("errors"):
        parts.append("LOADGEN ERRORS (see run.json)")
    if record.get("fault"):
        parts.append(f"FAULT {record['fault']['error']}")
    if record.get("interrupted"):
        parts.append(record["interrupted"].upper())
    if record["backend"].get("degraded"):
        parts.append(f"DEGRADED ({len(record['backend'].get('events', []))} Ray worker(s) lost)")
    if (record.get("machine_load") or {}).get("warning"):
        parts.append(f"MACHINE NOT IDLE ({record['machine_load']['other_cores_mean']:.2f} cores used by others)")

    requested = record["qsl"].get("requested_count")
    cut = f" (--count {requested} cut to all the dataset has)" if requested and requested > record["qsl"]["features"] else ""
    parts.append(f"{record['qsl']['features']} features{cut}")
    parts.append(record["model"]["name"] + (" (UNTRAINED)" if record["model"].get("trained") is False else ""))
    kind = record["dataset"].get("kind") or ("official" if record["dataset"]["official"] else SAMPLE)
    if kind in DATA_LABELS:
        parts.append(DATA_LABELS[kind])
    parts.append(record["run_dir"])
    return " | ".join(parts)
