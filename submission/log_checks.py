"""The local validator's checks of a scenario's LoadGen logs: the performance run, the accuracy run and TEST01
(the submission checker's ``performance_check``, ``accuracy_check`` and ``compliance_check``)."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.loadgen_logs import DETAIL_LOG, read_detail_log
from submission import rules
from submission.findings import AUDIT_CONFIG_NOTE, INVALID_RESULT_NOTE, OPEN_ACCURACY_NOTE, Collector, file_list_check


def _detail(c: Collector, path: Path) -> dict | None:
    try:
        return read_detail_log(path)
    except HarnessError as exc:
        c.error("missing", path, str(exc))
        return None


def performance_checks(c: Collector, detail_path: Path, scenario: str, division: str, seeds: dict[str, int],
                       role: str) -> None:
    """performance_check.PerformanceCheck, plus result validity (the checker only reads it for the CSV)."""
    d = _detail(c, detail_path)
    if d is None:
        return
    logged = d.get("effective_scenario")
    if logged != scenario:
        c.error("invalid", detail_path, f"{role} ran scenario {logged}, filed under {scenario}")
    if d.get("effective_test_mode") != "PerformanceOnly":
        c.error("invalid", detail_path, f"{role} is not a performance-mode run ({d.get('effective_test_mode')})")
    if d.get("result_validity") != "VALID":
        reason = d.get("result_invalid_reason") or "see the summary's recommendations"
        c.error("invalid", detail_path, f"{role} result is {d.get('result_validity')}: {reason}".strip(),
                stricter=INVALID_RESULT_NOTE)
    for error in d.get("errors", []):
        c.error("invalid", detail_path, f"LoadGen error in {role}: {error}")
    count = d.get("effective_performance_sample_count") or 0
    if count < rules.PERFORMANCE_SAMPLE_COUNT:
        c.error("noncompliant", detail_path,
                f"performance_sample_count {count} < {rules.PERFORMANCE_SAMPLE_COUNT} (a subset of the dataset)")
    for name, expected in seeds.items():
        found = d.get(f"effective_{name}")
        if found != expected:
            c.error("noncompliant", detail_path, f"{name} is {found}, the official rules file says {expected}")
    duration = d.get("effective_min_duration_ms") or 0
    if duration < rules.MIN_DURATION_MS:
        c.error("noncompliant", detail_path, f"min_duration {duration} ms < {rules.MIN_DURATION_MS} ms (10 minutes)")
    if scenario not in rules.EARLY_STOPPING_SCENARIOS:
        needed = rules.MIN_QUERIES.get(scenario)
        if needed and (d.get("effective_min_query_count") or 0) < needed:
            c.error("noncompliant", detail_path, f"min_query_count {d.get('effective_min_query_count')} < {needed}")
    elif not d.get("early_stopping_met", False):
        c.error("invalid", detail_path, f"early stopping condition not met: {d.get('early_stopping_result')}")
    if (division == "closed" and scenario == "Offline"
            and (d.get("effective_samples_per_query") or 0) < rules.OFFLINE_MIN_SAMPLES_PER_QUERY):
        c.error("noncompliant", detail_path, f"Offline samples_per_query {d.get('effective_samples_per_query')} < "
                f"{rules.OFFLINE_MIN_SAMPLES_PER_QUERY} (closed division)")


def accuracy_checks(c: Collector, acc_dir: Path, division: str) -> None:
    """accuracy_check.AccuracyCheck: F1 line and hash in accuracy.txt, truncated log, full dataset, no errors."""
    txt = acc_dir / "accuracy.txt"
    if txt.is_file():
        f1 = hash_value = None
        for line in txt.read_text(errors="replace").splitlines(keepends=True):
            m = rules.F1_PATTERN.match(line)
            if m:
                f1 = float(m.group(1))
            m = rules.HASH_PATTERN.match(line)
            if m:
                hash_value = m.group(1)
        if f1 is None:
            c.error("missing", txt, 'no line matching the checker\'s F1 pattern {"exact_match": X, "f1": Y}')
        elif not rules.accuracy_target_met(f1):
            # closed: the checker rejects it too; open: it only warns, we refuse unless accepted explicitly
            c.error("accuracy", txt, f"F1 {f1:.3f} is below the bert-99 target {rules.ACCURACY_TARGET_F1:.3f} "
                    f"(99% of {rules.REFERENCE_F1})", stricter=OPEN_ACCURACY_NOTE if division == "open" else None)
        if hash_value is None:
            c.error("missing", txt, "no 'hash=<sha256 of mlperf_log_accuracy.json>' line")
    log = acc_dir / "mlperf_log_accuracy.json"
    if log.is_file() and log.stat().st_size > rules.MAX_ACCURACY_LOG_SIZE:
        c.error("missing", log, f"not truncated ({log.stat().st_size} bytes > {rules.MAX_ACCURACY_LOG_SIZE})")
    if (acc_dir / DETAIL_LOG).is_file():
        d = _detail(c, acc_dir / DETAIL_LOG)
        if d is None:
            return
        if d.get("effective_test_mode") != "AccuracyOnly":
            c.error("invalid", acc_dir / DETAIL_LOG, f"not an accuracy-mode run ({d.get('effective_test_mode')})")
        for error in d.get("errors", []):
            c.error("invalid", acc_dir / DETAIL_LOG, f"LoadGen error in the accuracy run: {error}")
        total = d.get("effective_accuracy_sample_count") or d.get("qsl_reported_total_count")
        if total != rules.DATASET_SIZE:
            c.error("noncompliant", acc_dir / DETAIL_LOG,
                    f"the accuracy run covers {total} samples, not the whole dataset ({rules.DATASET_SIZE})")


def test01_checks(c: Collector, test01: Path, scenario: str, division: str, seeds: dict[str, int]) -> None:
    """compliance_check.ComplianceCheck for TEST01 (the only compliance test bert-99 has)."""
    if not test01.is_dir():
        why = ("required in the closed division; --no-compliance applies to the open division only"
               if division == "closed" else "run by default; --no-compliance leaves it out in the open division")
        c.error("missing", test01, f"TEST01 compliance directory missing ({why})")
        return
    verify_acc = test01 / "verify_accuracy.txt"
    verify_perf = test01 / "verify_performance.txt"
    acc_passed = False
    if not verify_acc.is_file():
        c.error("missing", verify_acc, "missing")
    else:
        acc_passed = rules.PASS_LINE in [line.strip() for line in verify_acc.read_text(errors="replace").splitlines()]
    acc_dir = test01 / "accuracy"
    required = rules.REQUIRED_TEST01_ACC_FILES_PASS if acc_passed else rules.REQUIRED_TEST01_ACC_FILES_FAIL
    file_list_check(c, acc_dir, required)
    if verify_acc.is_file() and not acc_passed:
        delta = _fallback_delta(acc_dir)
        if delta is None:
            c.error("invalid", verify_acc, "TEST01 accuracy failed: sampled responses differ from the accuracy run, "
                    "and no usable baseline/compliance accuracy (both non-zero) to fall back on")
        elif delta > rules.TEST01_ACCURACY_DELTA_PERCENT:
            c.error("invalid", verify_acc, f"TEST01 accuracy failed: responses differ and the subset F1 differs by "
                    f"{delta:.3f}% (> {rules.TEST01_ACCURACY_DELTA_PERCENT}%)")
        else:
            c.warn("invalid", verify_acc, f"responses not bit-identical; accepted by the non-deterministic fallback "
                   f"(subset F1 within {delta:.3f}%)")
    if not verify_perf.is_file():
        c.error("missing", verify_perf, "missing")
    elif rules.PASS_LINE not in verify_perf.read_text(errors="replace"):
        lines = [line for line in verify_perf.read_text(errors="replace").splitlines() if line.startswith("TEST FAIL")]
        c.error("invalid", verify_perf, f"TEST01 performance failed: {lines[0] if lines else 'no TEST PASS line'}")
    perf_dir = test01 / "performance" / "run_1"
    file_list_check(c, perf_dir, rules.REQUIRED_COMPLIANCE_PERF_FILES, ("mlperf_log_accuracy.json",))
    if (perf_dir / DETAIL_LOG).is_file():
        performance_checks(c, perf_dir / DETAIL_LOG, scenario, division, seeds, role="TEST01 run")
        d = read_detail_log(perf_dir / DETAIL_LOG)
        if not d.get("effective_accuracy_log_sampling_target") and not d.get("effective_accuracy_log_probability"):
            c.error("invalid", perf_dir / DETAIL_LOG, "the TEST01 run did not use the audit.config "
                    "(no accuracy-log sampling in its settings)", stricter=AUDIT_CONFIG_NOTE)


def _fallback_delta(acc_dir: Path) -> float | None:
    """|1 - baseline/compliance| in percent from TEST01/accuracy/*_accuracy.txt; None if unusable."""
    values = {}
    for name in ("baseline_accuracy.txt", "compliance_accuracy.txt"):
        path = acc_dir / name
        if not path.is_file():
            return None
        for line in path.read_text(errors="replace").splitlines():
            m = rules.F1_PATTERN.match(line)
            if m:
                values[name] = float(m.group(1))
    baseline, compliance = values.get("baseline_accuracy.txt"), values.get("compliance_accuracy.txt")
    if not baseline or not compliance:
        return None
    return abs(1 - baseline / compliance) * 100
