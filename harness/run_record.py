"""A run's record (``run.json``): how it ended (complete, failed, stopped, out of space), the advice it carries and
the one summary line a person reads."""

from __future__ import annotations

import time
from pathlib import Path

from harness.engine_choice import summary_tag
from harness.errors import DiskFull
from harness.latency_watch import LatencyWatch
from harness.rundir import RUN_JSON, mark_incomplete, release_reserve, write_json_atomic
from squad.data import DATA_LABELS, SAMPLE

SAMPLE_LATENCIES_FILE = "sample_latencies_ms.npy"
UNTRAINED_NOTE = (
    "model weights are UNTRAINED (architecture-faithful benchmark model): accuracy figures are "
    "meaningless, speed figures are valid"
)


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



def write_final_record(run_dir: Path, record: dict) -> None:
    """The run's record, written for the last time: the space reserve goes first (a full device then still
    takes it)."""
    release_reserve(run_dir)
    write_json_atomic(run_dir / RUN_JSON, record)


def record_disk_full(run_dir: Path, record: dict, error: DiskFull) -> DiskFull:
    """Mark a run whose device filled up as failed, as far as the device still allows; returns the error to
    raise (it says whether run.json could record it)."""
    record.update(status="failed", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    record["fault"] = {"error": f"DiskFull: {error}", "kind": "disk full",
                       "samples_completed": record.get("samples_completed")}
    record["summary"] = summary_line(record)
    try:
        write_final_record(run_dir, record)
        recorded = f"the run is marked failed in {run_dir / RUN_JSON}"
    except OSError:
        recorded = f"{run_dir / RUN_JSON} could not record the failure either"
    try:
        mark_incomplete(run_dir, f"no space left on device ({error})")
    except OSError:
        pass  # the marker from the run's start stays
    return DiskFull(f"{error}; {recorded}")



def record_stopped(run_dir: Path, record: dict, sut, watch: LatencyWatch | None) -> None:
    """A run stopped because it could no longer be VALID: INVALID with the reason, marked incomplete."""
    record.update(status="stopped", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  results={"validity": "INVALID", "invalid_reason": sut.abandoned},
                  samples_completed=sut.completed, latency_watch=watch.as_dict() if watch else None)
    record["notes"].append(f"stopped early (--abort-when-invalid): {sut.abandoned}")
    record["summary"] = summary_line(record)
    write_final_record(run_dir, record)
    mark_incomplete(run_dir, f"stopped early because the run could no longer be VALID: {sut.abandoned}")


def record_failed(run_dir: Path, record: dict, sut, note: str | None = None) -> None:
    record["status"] = "failed"
    record["fault"] = {
        "error": f"{type(sut.fault).__name__}: {sut.fault}",
        "traceback": sut.fault_traceback,
        "samples_completed": sut.completed,
        "note": note,
    }
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["summary"] = summary_line(record)
    write_final_record(run_dir, record)
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
