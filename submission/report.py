"""The results table of a package, like the MLPerf results pages (Markdown and CSV)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from harness.loadgen_logs import DETAIL_LOG, read_detail_log
from submission import rules
from submission.layout import Layout

COLUMNS = (
    "Submitter", "Division", "Availability", "System", "Benchmark", "Implementation", "Scenario",
    "Accuracy (F1)", "Accuracy target", "Result", "Units", "Validity", "TEST01", "Notes",
)


def _f1(accuracy_txt: Path) -> float | None:
    if not accuracy_txt.is_file():
        return None
    for line in accuracy_txt.read_text(errors="replace").splitlines():
        m = rules.F1_PATTERN.match(line)
        if m:
            return float(m.group(1))
    return None


def _passed(path: Path) -> bool:
    return path.is_file() and rules.PASS_LINE in [line.strip() for line in path.read_text(errors="replace").splitlines()]


def result_rows(layout: Layout, scenarios: list[str], *, availability: str, notes: dict[str, str],
                test01_skipped: bool = False) -> list[dict]:
    """One row per scenario, read back from the packaged files (so the table shows what was packaged)."""
    rows = []
    for scenario in scenarios:
        detail_path = layout.performance_dir(scenario) / DETAIL_LOG
        detail = read_detail_log(detail_path) if detail_path.is_file() else {}
        value = detail.get(rules.RESULT_FIELD[scenario])
        if value is not None and scenario == "SingleStream":
            value = value / 1e6  # ns -> ms, as the results pages show it
        f1 = _f1(layout.accuracy_dir(scenario) / "accuracy.txt")
        test01 = layout.test01_dir(scenario)
        acc_ok, perf_ok = _passed(test01 / "verify_accuracy.txt"), _passed(test01 / "verify_performance.txt")
        rows.append({
            "Submitter": layout.submitter,
            "Division": layout.division,
            "Availability": availability,
            "System": layout.system,
            "Benchmark": layout.benchmark,
            "Implementation": layout.implementation,
            "Scenario": scenario,
            "Accuracy (F1)": "" if f1 is None else f"{f1:.3f}",
            "Accuracy target": f"{rules.ACCURACY_TARGET_F1:.3f}" + ("" if f1 is None or rules.accuracy_target_met(f1)
                                                                   else " (NOT MET)"),
            "Result": "" if value is None else f"{value:.3f}",
            "Units": rules.UNITS[scenario] + (" (early-stopping p90)" if scenario == "SingleStream" else ""),
            "Validity": detail.get("result_validity", "missing"),
            "TEST01": "skipped (--no-compliance)" if test01_skipped and not test01.exists() else
                      "PASS" if acc_ok and perf_ok else
                      f"FAIL ({', '.join(n for n, ok in (('accuracy', acc_ok), ('performance', perf_ok)) if not ok)})",
            "Notes": notes.get(scenario, ""),
        })
    return rows


def markdown_table(rows: list[dict]) -> str:
    def cell(value: str) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
