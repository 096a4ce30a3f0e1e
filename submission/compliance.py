"""Compliance TEST01 verification, as compliance/TEST01 ``run_verification.py`` does it (docs/submission.md).

Accuracy: the responses LoadGen sampled into a performance run's accuracy log must equal the accuracy run's, byte for
byte (or, when they differ, the sampled questions' F1 from both must agree within 1%). Performance: the TEST01 score
within 10% of the submitted one. The reports follow the reference's format, which the submission checker greps.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.loadgen_logs import ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG, read_detail_log
from submission import rules

Scorer = Callable[[dict[int, bytes]], dict]  # responses by qsl_idx -> {"f1", "exact_match", "questions"}


class ComplianceError(HarnessError):
    """A TEST01 input (accuracy log, detail log) is missing or malformed."""


def read_log_entries(path: Path) -> list[tuple[int, str]]:
    """(qsl_idx, lower-case hex data) of every entry of a LoadGen accuracy log, in file order."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ComplianceError(f"{path}: accuracy log not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ComplianceError(f"{path}: not a readable LoadGen accuracy log ({exc})") from None
    if not isinstance(entries, list):
        raise ComplianceError(f"{path}: expected a JSON list of LoadGen responses")
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append((int(entry["qsl_idx"]), str(entry["data"]).lower()))
        except (KeyError, TypeError, ValueError):
            raise ComplianceError(f"{path}: entry [{i}] has no integer qsl_idx / hex data") from None
    return out


@dataclass
class AccuracyVerification:
    """TEST01 accuracy: the sampled responses against the accuracy run's (reference counters)."""

    num_acc_log_entries: int = 0
    num_acc_log_duplicate_keys: int = 0
    num_acc_log_data_mismatch: int = 0
    num_perf_log_entries: int = 0
    num_perf_log_qsl_idx_match: int = 0
    num_perf_log_data_mismatch: int = 0
    num_missing_qsl_idxs: int = 0
    max_abs_difference: float = 0.0
    mismatched_qsl_idx: list[int] = field(default_factory=list)
    baseline: dict | None = None  # subset accuracy from the accuracy run (fallback only)
    compliance: dict | None = None  # subset accuracy from the TEST01 log (fallback only)

    @property
    def identical(self) -> bool:
        """The deterministic criterion: every sampled response matched, and at least one was checked."""
        return (self.num_perf_log_data_mismatch == 0 and self.num_perf_log_qsl_idx_match > 0
                and self.num_missing_qsl_idxs == 0)

    @property
    def delta_percent(self) -> float | None:
        if not self.baseline or not self.compliance or not self.compliance["f1"]:
            return None
        return abs(1 - self.baseline["f1"] / self.compliance["f1"]) * 100

    @property
    def fallback_passed(self) -> bool:
        delta = self.delta_percent
        return (delta is not None and bool(self.baseline["f1"]) and delta <= rules.TEST01_ACCURACY_DELTA_PERCENT)

    @property
    def passed(self) -> bool:
        return self.identical or self.fallback_passed

    def report(self) -> str:
        """verify_accuracy.txt: the reference's counters, then TEST PASS / TEST FAIL."""
        lines = [
            "Verifying accuracy (TEST01): every sampled response is compared byte for byte with the accuracy",
            "run's response for the same qsl_idx (float32 [384, 2] start/end logits).",
            f"num_acc_log_entries = {self.num_acc_log_entries}",
            f"num_acc_log_duplicate_keys = {self.num_acc_log_duplicate_keys}",
            f"num_acc_log_data_mismatch = {self.num_acc_log_data_mismatch}",
            f"num_perf_log_entries = {self.num_perf_log_entries}",
            f"num_perf_log_qsl_idx_match = {self.num_perf_log_qsl_idx_match}",
            f"num_perf_log_data_mismatch = {self.num_perf_log_data_mismatch}",
            f"num_missing_qsl_idxs = {self.num_missing_qsl_idxs}",
        ]
        if self.num_perf_log_data_mismatch:
            shown = ", ".join(str(i) for i in self.mismatched_qsl_idx[:10])
            lines.append(f"max_abs_logit_difference = {self.max_abs_difference:.6g} (first mismatched qsl_idx: {shown})")
        if self.identical:
            lines.append(rules.PASS_LINE)
        else:
            lines.append("TEST FAIL")
            if self.baseline is not None and self.compliance is not None:
                delta = self.delta_percent
                lines.append(
                    f"Non-deterministic fallback: sampled-subset F1 {self.baseline['f1']:.4f} (accuracy run) vs "
                    f"{self.compliance['f1']:.4f} (TEST01 run) over {self.baseline['questions']} questions; "
                    f"delta {'n/a' if delta is None else f'{delta:.3f}%'} (allowed "
                    f"{rules.TEST01_ACCURACY_DELTA_PERCENT}%, both must be non-zero): "
                    f"{'within tolerance' if self.fallback_passed else 'OUT OF TOLERANCE'}"
                )
        return "\n".join(lines) + "\n\n"


def verify_accuracy(accuracy_log: Path, test01_log: Path, *, scorer: Scorer | None = None) -> AccuracyVerification:
    """Compare the TEST01 accuracy log with the accuracy run's; score the subset if they differ."""
    reference = read_log_entries(accuracy_log)
    sampled = read_log_entries(test01_log)
    result = AccuracyVerification(num_acc_log_entries=len(reference), num_perf_log_entries=len(sampled))
    by_idx: dict[int, str] = {}
    for qsl_idx, data in reference:
        if qsl_idx in by_idx:
            result.num_acc_log_duplicate_keys += 1
            result.num_acc_log_data_mismatch += by_idx[qsl_idx] != data
        else:
            by_idx[qsl_idx] = data
    for qsl_idx, data in sampled:
        if qsl_idx not in by_idx:
            result.num_missing_qsl_idxs += 1
            continue
        result.num_perf_log_qsl_idx_match += 1
        if by_idx[qsl_idx] != data:
            result.num_perf_log_data_mismatch += 1
            result.mismatched_qsl_idx.append(qsl_idx)
            result.max_abs_difference = max(result.max_abs_difference, _max_abs_difference(by_idx[qsl_idx], data))
    if not result.identical and scorer is not None:
        subset = {q for q, _ in sampled if q in by_idx}
        result.baseline = scorer({q: bytes.fromhex(by_idx[q]) for q in subset})
        result.compliance = scorer({q: bytes.fromhex(d) for q, d in _first_per_idx(sampled).items() if q in subset})
    return result


def _first_per_idx(entries: list[tuple[int, str]]) -> dict[int, str]:
    out: dict[int, str] = {}
    for qsl_idx, data in entries:
        out.setdefault(qsl_idx, data)
    return out


def _max_abs_difference(hex_a: str, hex_b: str) -> float:
    a, b = bytes.fromhex(hex_a), bytes.fromhex(hex_b)
    if len(a) != len(b) or len(a) % 4:
        return float("inf")
    diff = np.abs(np.frombuffer(a, np.float32).astype(np.float64) - np.frombuffer(b, np.float32))
    return float(np.nanmax(diff)) if diff.size else 0.0


@dataclass
class PerformanceVerification:
    """TEST01 performance: the TEST01 run's score against the submitted performance run's."""

    scenario: str | None
    reference_score: float | None
    test_score: float | None
    tolerance: float
    failure: str | None  # None when the test passed

    @property
    def passed(self) -> bool:
        return self.failure is None

    def report(self) -> str:
        lines = ["Verifying performance."]
        if self.reference_score is not None and self.test_score is not None:
            unit = "ns (early-stopping p90 latency)" if self.scenario == "SingleStream" else "samples/s"
            lines += [f"Reference score = {self.reference_score}", f"Test score = {self.test_score}",
                      f"Scenario = {self.scenario}, unit = {unit}, allowed deviation = {self.tolerance:.0%}"]
        lines.append(rules.PASS_LINE if self.passed else f"TEST FAIL: {self.failure}")
        return "\n".join(lines) + "\n"


def verify_performance(reference_detail: Path, test_detail: Path) -> PerformanceVerification:
    ref = read_detail_log(Path(reference_detail))
    test = read_detail_log(Path(test_detail))
    scenario = ref.get("effective_scenario")
    result = PerformanceVerification(scenario, None, None, rules.TEST01_PERF_TOLERANCE, None)
    for detail, path in ((ref, reference_detail), (test, test_detail)):
        if detail.get("result_validity") != "VALID":
            result.failure = f"Invalid results in {path}"
            return result
    if test.get("effective_scenario") != scenario:
        result.failure = "Test and reference scenarios do not match!"
        return result
    if scenario not in rules.RESULT_FIELD:
        result.failure = f"scenario {scenario!r} is not one of bert-99's"
        return result
    if scenario == "Server" and test.get("effective_target_latency_ns") != ref.get("effective_target_latency_ns"):
        result.failure = "Server target latency mismatch"
        return result
    key = rules.RESULT_FIELD[scenario]
    try:
        result.reference_score = float(ref[key])
        result.test_score = float(test[key])
    except (KeyError, TypeError, ValueError):
        result.failure = f"{key} missing from a detail log"
        return result
    if scenario == "SingleStream" and result.reference_score <= rules.TEST01_FAST_SINGLESTREAM_NS:
        result.tolerance = rules.TEST01_PERF_TOLERANCE_FAST
    low, high = result.reference_score * (1 - result.tolerance), result.reference_score * (1 + result.tolerance)
    if not low <= result.test_score <= high:
        result.failure = "Test score invalid"
    return result


@dataclass
class Test01Result:
    accuracy: AccuracyVerification
    performance: PerformanceVerification

    @property
    def passed(self) -> bool:
        return self.accuracy.passed and self.performance.passed


def squad_subset_scorer(features) -> Scorer:
    """F1/EM over the questions the given responses cover (the TEST01 fallback's apples-to-apples score)."""
    from harness.accuracy import decode_logits
    from squad.scoring import score_windows

    def score(responses: dict[int, bytes]) -> dict:
        seq = features.params.max_seq_length
        logits = {i: decode_logits(data, seq) for i, data in responses.items() if data and i < len(features)}
        covered = {features.examples[int(features.example_index[i])].qas_id for i in logits}
        _, scores = score_windows(features, logits, question_ids=covered)
        return {"f1": scores["f1"], "exact_match": scores["exact_match"], "questions": scores["questions"]}

    return score


def accuracy_line(scores: dict) -> str:
    """One accuracy.txt line in the format the checker's F1 pattern parses (fixed-point, no exponent)."""
    return f'{{"exact_match": {scores["exact_match"]:.6f}, "f1": {scores["f1"]:.6f}}}'


def write_test01_dir(
    out_dir: Path, test01_run_dir: Path, result: Test01Result, *, subset_scores: dict | None,
) -> list[Path]:
    """TEST01/ as run_verification.py lays it out: verify_*.txt, performance/run_1 (summary, detail),
    accuracy/ (the sampled accuracy log and its accuracy.txt; plus baseline/compliance accuracy when
    the responses were not identical)."""
    out_dir = Path(out_dir)
    perf_dir = out_dir / "performance" / "run_1"
    acc_dir = out_dir / "accuracy"
    perf_dir.mkdir(parents=True)
    acc_dir.mkdir(parents=True)
    written = []
    for name, text in (("verify_accuracy.txt", result.accuracy.report()),
                       ("verify_performance.txt", result.performance.report())):
        (out_dir / name).write_text(text)
        written.append(out_dir / name)
    for name in (SUMMARY_LOG, DETAIL_LOG):
        shutil.copy2(Path(test01_run_dir) / name, perf_dir / name)
        written.append(perf_dir / name)
    shutil.copy2(Path(test01_run_dir) / ACCURACY_LOG, acc_dir / ACCURACY_LOG)
    written.append(acc_dir / ACCURACY_LOG)
    compliance_scores = result.accuracy.compliance or subset_scores
    if compliance_scores is not None:
        (acc_dir / "accuracy.txt").write_text(accuracy_line(compliance_scores) + "\n")
        written.append(acc_dir / "accuracy.txt")
    if not result.accuracy.identical and result.accuracy.baseline is not None:
        (acc_dir / "baseline_accuracy.txt").write_text(accuracy_line(result.accuracy.baseline) + "\n")
        (acc_dir / "compliance_accuracy.txt").write_text(accuracy_line(result.accuracy.compliance) + "\n")
        written += [acc_dir / "baseline_accuracy.txt", acc_dir / "compliance_accuracy.txt"]
    return written


def run_test01_verification(
    performance_run: Path, accuracy_run: Path, test01_run: Path, *, scorer: Scorer | None = None,
) -> Test01Result:
    """Both TEST01 criteria, from the three run directories."""
    accuracy = verify_accuracy(Path(accuracy_run) / ACCURACY_LOG, Path(test01_run) / ACCURACY_LOG, scorer=scorer)
    performance = verify_performance(Path(performance_run) / DETAIL_LOG, Path(test01_run) / DETAIL_LOG)
    return Test01Result(accuracy, performance)
