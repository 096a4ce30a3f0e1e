"""Reading LoadGen's own logs back: the detail log's ``:::MLLOG`` records are the source of truth for
validity, throughput and latency (the summary text is for people)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DiskFull, HarnessError

DETAIL_LOG = "mlperf_log_detail.txt"
SUMMARY_LOG = "mlperf_log_summary.txt"
ACCURACY_LOG = "mlperf_log_accuracy.json"
TRACE_LOG = "mlperf_log_trace.json"
LOG_FILES = (SUMMARY_LOG, DETAIL_LOG, ACCURACY_LOG, TRACE_LOG)

_PREFIX = ":::MLLOG "
# Free space under which a cut log is blamed on the device: a write that does not fit fills it to the last block
NEARLY_FULL_BYTES = 1 << 20


def expected_bytes(mode: str, features: int, max_seq_length: int) -> int:
    """About what one test writes into its run directory: LoadGen's detail and summary logs, the conf copies,
    run.json and the latencies take well under 256 KiB; an accuracy log holds every response in hex (two
    float32 logits per position: 6,144 hex digits a feature at 384 tokens, 67 MB for SQuAD dev), and its
    predictions.json a line per question."""
    written = 256 * 1024
    if mode == "accuracy":
        written += features * (max_seq_length * 2 * 4 * 2 + 64 + 200)
    return written


def logs_cut_short(run_dir: Path, mode: str) -> list[str]:
    """LoadGen's logs of a finished test that end mid-record or lack their results. LoadGen writes them
    through C++ streams and ignores write errors, so a full device cuts them without a word."""
    cut = []
    for name in (ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG):  # the one that matters most first
        path = run_dir / name
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(max(0, size - 4096))
                tail = f.read()
        except OSError:
            cut.append(name)
            continue
        if name == ACCURACY_LOG:
            complete = tail.rstrip().endswith(b"]")  # a JSON list, "[\n]\n" when it holds nothing
        elif name == DETAIL_LOG:
            last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
            complete = tail.endswith(b"\n") and last.startswith(_PREFIX) and _parses(last[len(_PREFIX):])
            if complete and mode == "performance":  # a cut at a line boundary loses the results
                complete = b'"key": "result_validity"' in path.read_bytes()
        else:
            complete = tail.endswith(b"\n")
        if not complete:
            cut.append(name)
    return cut


def check_logs_complete(run_dir: Path, mode: str) -> None:
    """Raise when LoadGen's logs were cut short: :class:`DiskFull` naming the first one when the device is
    (nearly) full, otherwise a :class:`HarnessError`."""
    from harness.rundir import free_bytes

    cut = logs_cut_short(run_dir, mode)
    if not cut:
        return
    try:
        full = free_bytes(run_dir) < NEARLY_FULL_BYTES
    except OSError:
        full = False
    if full:
        raise DiskFull(f"{run_dir / cut[0]}: no space left on device: LoadGen's {', '.join(cut)} cut short "
                       "(LoadGen ignores write errors)")
    raise HarnessError(f"{run_dir / cut[0]}: LoadGen's {', '.join(cut)} end mid-record although LoadGen finished "
                       "(was a file changed while it ran?)")


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def read_detail_log(path: Path) -> dict:
    """Last value of every key in a detail log, plus ``errors``/``warnings`` lists of messages."""
    if not path.is_file():
        raise HarnessError(f"{path}: LoadGen detail log not found (did the run finish?)")
    values: dict = {}
    errors: list[str] = []
    warnings: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith(_PREFIX):
            continue
        try:
            record = json.loads(line[len(_PREFIX) :])
        except json.JSONDecodeError:
            continue  # a record cut short by a killed run
        values[record["key"]] = record.get("value")
        metadata = record.get("metadata") or {}
        if metadata.get("is_error"):
            errors.append(f"{record['key']}: {record.get('value')}")
        elif metadata.get("is_warning"):
            warnings.append(f"{record['key']}: {record.get('value')}")
    values["errors"] = errors
    values["warnings"] = warnings
    return values


# The constraints LoadGen checks, as its detail log flags them: one it failed names the reason of an INVALID run
# where LoadGen's own reason is empty (it writes one only for some, e.g. not for early stopping).
_CONSTRAINTS = (("result_perf_constraints_met", "latency constraint not met"),
                ("result_min_duration_met", "min duration not met"),
                ("result_min_queries_met", "min query count not met"),
                ("early_stopping_met", "early stopping not satisfied"))


def invalid_reason(detail: dict) -> str | None:
    """Why LoadGen called the run INVALID: its own reason, and each constraint it flags as failed."""
    if detail.get("result_validity") == "VALID":
        return None
    reasons = [detail["result_invalid_reason"]] if detail.get("result_invalid_reason") else []
    reasons += [text for key, text in _CONSTRAINTS if detail.get(key) is False]
    return "; ".join(reasons) or None


_PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")


def performance_metrics(detail: dict, scenario: str) -> dict:
    """The headline figures of a performance run, in the units people quote (samples/s, ms)."""
    def ms(key: str) -> float | None:
        value = detail.get(key)
        return round(value / 1e6, 3) if isinstance(value, (int, float)) else None

    metrics: dict = {
        "validity": detail.get("result_validity"),
        "invalid_reason": invalid_reason(detail),
        "min_duration_met": detail.get("result_min_duration_met"),
        "min_queries_met": detail.get("result_min_queries_met"),
        "perf_constraints_met": detail.get("result_perf_constraints_met"),
        "early_stopping_met": detail.get("early_stopping_met"),
        "query_count": detail.get("result_query_count"),
        "latency_ms": {
            "min": ms("result_min_latency_ns"),
            "mean": ms("result_mean_latency_ns"),
            "max": ms("result_max_latency_ns"),
            **{f"p{p.rstrip('0').rstrip('.')}": ms(f"result_{p}_percentile_latency_ns") for p in _PERCENTILES},
        },
        "loadgen_errors": detail.get("errors", []),
    }
    if scenario == "Offline":
        metrics["samples_per_second"] = detail.get("result_samples_per_second")
    elif scenario == "Server":
        metrics["samples_per_second"] = detail.get("result_completed_samples_per_sec")
        metrics["scheduled_samples_per_second"] = detail.get("result_scheduled_samples_per_sec")
        metrics["target_qps"] = detail.get("effective_target_qps")
        metrics["target_latency_ms"] = ms("effective_target_latency_ns")
        metrics["overlatency_query_count"] = detail.get("result_overlatency_query_count")
    elif scenario == "SingleStream":
        metrics["samples_per_second"] = detail.get("result_qps_with_loadgen_overhead")
        metrics["early_stopping_p90_latency_ms"] = ms("early_stopping_latency_ss")
    return metrics
