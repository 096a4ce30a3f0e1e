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
from harness.errors import BackendFault, ConfigError, DiskFull, RunStopped
from harness.interrupts import describe as describe_interrupt
from harness.latency_watch import LatencyWatch
from harness.loadgen_logs import (ACCURACY_LOG, DETAIL_LOG, check_logs_complete, expected_bytes, performance_metrics,
                                  read_detail_log)
from harness.machine_load import LoadMonitor
from harness.models import ModelInfo, check_model_fits, check_vocab_fits
from harness.options import to_dict
from harness.qsl import SquadQSL
from harness.run_record import (SAMPLE_LATENCIES_FILE, UNTRAINED_NOTE, harness_overhead_pct, offered_load_note, record_disk_full, record_failed,
                                 record_stopped, summary_line, write_final_record)
from harness.rundir import (RUN_JSON, check_free_space, create_run_dir, disk_full_error, is_no_space, mark_complete,
                            mark_incomplete, naming, write_atomic, write_json_atomic)
from harness.scenarios import SutOptions, create_sut
from harness.loadgen_settings import ConfSettings, LoadGenOverrides, build_test_settings, issue_plan
from squad.features import FeatureSet
from harness.sysinfo import harness_commit, machine_info, peak_rss_mb, software_versions
from squad.data import DATA_NOTES, SAMPLE, DatasetFiles

log = logging.getLogger(__name__)


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


def check_request(request: RunRequest) -> dict:
    """Refuse a request whose model, vocabulary or length buckets do not fit its features, before any engine is built
    or run directory made; returns the vocabulary check for the record (:func:`harness.models.check_vocab_fits`)."""
    r = request
    check_model_fits(r.model, r.features.params.max_seq_length)
    buckets = r.backend_options.sequence_buckets
    if buckets and buckets[-1] != r.features.params.max_seq_length:
        raise ConfigError(f"--buckets {','.join(map(str, buckets))}: the largest bucket must be the window length "
                          f"{r.features.params.max_seq_length}, so that every window fits")
    return check_vocab_fits(r.model, r.dataset.vocab, sample=r.dataset.kind == SAMPLE)


def execute_run(request: RunRequest, *, backend: Backend | None = None, conf_settings: ConfSettings | None = None,
                vocab_check: dict | None = None) -> dict:
    """Run one scenario/mode; returns the run record (also written to ``run.json``).

    ``backend``: an engine built by the caller for several runs (benchmarks; left open here).
    ``conf_settings``: TestSettings already read from the conf files for this scenario
    (:func:`harness.loadgen_settings.conf_test_settings`): LoadGen must read the conf files only once per process,
    or every later test logs "Multiple conf files are used"; this request's mode and overrides are applied.
    ``vocab_check``: :func:`check_request`'s result where the caller checked the request already (before building
    the engine it passes), so that it runs once.
    Raises :class:`BackendFault` (after writing the record) when the backend failed during the run."""
    r = request
    # Everything that can reject the input happens before a run directory exists.
    if vocab_check is None:
        vocab_check = check_request(r)
    if conf_settings is None:
        settings, adjustments = build_test_settings(
            r.scenario, r.mode, mlperf_conf=r.mlperf_conf, user_conf=r.user_conf,
            total_count=len(r.features), overrides=r.overrides,
        )
    else:
        settings, adjustments = conf_settings.for_run(len(r.features), r.overrides, mode=r.mode)
    check_free_space(r.runs_root, expected_bytes(r.mode, len(r.features), r.features.params.max_seq_length),
                     f"a {r.mode} run of {len(r.features)} features")
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
        write_final_record(run_dir, record)
        raise
    except (OSError, DiskFull) as exc:  # every write of the run ends here when the device is full
        if not isinstance(exc, DiskFull) and not is_no_space(exc):
            raise
        raise record_disk_full(run_dir, record,
                                exc if isinstance(exc, DiskFull) else disk_full_error(exc, run_dir)) from None


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
    watch = LatencyWatch.for_settings(r.scenario, r.mode, settings)
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
        record_failed(run_dir, record, sut)
        raise BackendFault(
            f"the {r.backend} backend failed during the run ({type(sut.fault).__name__}: {sut.fault}); "
            f"partial logs kept in {run_dir}"
        )
    if sut.abandoned is not None:
        record_stopped(run_dir, record, sut, watch)
        raise RunStopped(f"{record['summary']}", run_dir=str(run_dir), reason=sut.abandoned)

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
    write_final_record(run_dir, record)
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
            "backend_options": to_dict(r.backend_options),
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
        record_failed(run_dir, record, sut, note="LoadGen did not return within the fault grace period; the process was ended")
        log.error("backend fault and LoadGen still running after %.0f s: exiting; partial logs in %s",
                  r.fault_grace_s, run_dir)
        exit_now(BackendFault.exit_status)
    record_stopped(run_dir, record, sut, watch)
    print(record["summary"])
    exit_now(RunStopped.exit_status)


