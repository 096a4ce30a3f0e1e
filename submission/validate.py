"""Local validator: the submission checker's checks that apply to ``bert-99``, with clear messages.

Mirrors mlcommons/inference ``tools/submission/submission_checker`` (structure rules of
``check_results_dir``, ``checks/system_check.py``, ``performance_check.py``, ``accuracy_check.py``,
``measurements_checks.py``, ``compliance_check.py``), applying each rule per division as the checker
does (the closed division needs the full scenario suite, TEST01 and the accuracy target; the open division
accepts any non-empty set of scenarios). Where it is deliberately stricter than the checker (see
:data:`STRICTER_RULES`), the finding says so in its message and is flagged ``stricter``, so that
``documentation/validation.md`` can list it.

Each finding has a category, so the packager can refuse a tree unless the user explicitly accepts it:

* ``missing``: files, directories or scenarios the checker requires are absent or malformed;
* ``invalid``: a performance run is INVALID, LoadGen logged errors, or TEST01 failed;
* ``noncompliant``: settings the rules forbid for a submission (under 10 minutes, a subset of the
  dataset, wrong seeds...), which is what ``--quick`` does on purpose;
* ``accuracy``: F1 below the bert-99 target (99% of 90.874).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.loadgen_logs import DETAIL_LOG, read_detail_log
from submission import rules
from submission.system import system_description_problems
from harness.sysinfo import REPO_ROOT

CATEGORIES = ("missing", "invalid", "noncompliant", "accuracy")
STRICTER_MARK = "stricter than the official checker"

# What the official checker does instead, for each rule where this validator is deliberately stricter
OPEN_ACCURACY_NOTE = ("in the open division the official checker only logs a warning for accuracy below the "
                      "target and accepts the result; package it with --allow-below-target")
OPEN_TEST01_NOTE = ("the official checker skips compliance tests in the open division; skip TEST01 there with "
                    "--no-compliance")
INVALID_RESULT_NOTE = ("the official checker does not look at LoadGen's result validity; package it with "
                       "--allow-invalid")
AUDIT_CONFIG_NOTE = "the official checker does not check which settings the TEST01 run used"

# (where, rule, what the official checker does): the table documentation/validation.md shows
STRICTER_RULES = (
    ("open", "accuracy below the bert-99 target is an error", OPEN_ACCURACY_NOTE),
    ("open", "TEST01 is run, required and verified", OPEN_TEST01_NOTE),
    ("open, closed", "a performance or TEST01 run that LoadGen marked INVALID is an error", INVALID_RESULT_NOTE),
    ("open, closed", "the TEST01 run must show the audit.config's accuracy-log sampling", AUDIT_CONFIG_NOTE),
)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    category: str  # one of CATEGORIES
    path: str  # relative to the tree root
    message: str
    stricter: bool = False  # the official checker would not report this (the message says why)

    def __str__(self) -> str:
        return f"{self.level.upper():7} [{self.category}] {self.path}: {self.message}"


def official_seeds(mlperf_conf: Path = REPO_ROOT / "mlperf.conf") -> dict[str, int]:
    """The RNG seeds of the official rules file (the checker's per-round ``seeds``)."""
    seeds = {}
    try:
        for line in Path(mlperf_conf).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            for name in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed"):
                if line.startswith(f"*.*.{name}") and "=" in line:
                    seeds[name] = int(line.split("=", 1)[1])
    except (OSError, ValueError):
        pass
    return seeds


class _Collector:
    def __init__(self, root: Path, quick: bool, test01_in_open: bool = True):
        self.root = root
        self.quick = quick
        self.test01_in_open = test01_in_open
        self.findings: list[Finding] = []
        self._stricter_note: str | None = None  # applies to every error while set (see stricter())

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root)) or "."
        except ValueError:
            return str(path)

    def error(self, category: str, path: Path, message: str, stricter: str | None = None) -> None:
        """An error; ``stricter`` says what the official checker does instead when it would not report it."""
        # --quick runs are non-compliant by design: reported, but not errors
        level = "warning" if (category == "noncompliant" and self.quick) else "error"
        note = stricter or self._stricter_note
        if note:
            message = f"{message} [{STRICTER_MARK}: {note}]"
        self.findings.append(Finding(level, category, self.rel(path), message, stricter=bool(note)))

    @contextmanager
    def stricter(self, note: str | None) -> Iterator[None]:
        """Every error reported inside is one the official checker would not report (``note`` says why)."""
        previous, self._stricter_note = self._stricter_note, note or self._stricter_note
        try:
            yield
        finally:
            self._stricter_note = previous

    def warn(self, category: str, path: Path, message: str) -> None:
        self.findings.append(Finding("warning", category, self.rel(path), message))


def _files(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.is_file()} if path.is_dir() else set()


def _dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def _file_list_check(c: _Collector, path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """utils.files_diff: the directory must hold exactly the required files (plus allowed extras)."""
    if not path.is_dir():
        c.error("missing", path, f"directory missing (needs {', '.join(required)})")
        return
    present = _files(path)
    allowed = set(required) | set(optional) | set(rules.ALWAYS_OPTIONAL_FILES)
    for name in sorted(set(required) - present):
        c.error("missing", path / name, "required file missing")
    for name in sorted(present - allowed):
        c.error("missing", path / name, f"unexpected file (the checker wants exactly {', '.join(required)})")
    for name in sorted(set(required) & present):
        if (path / name).stat().st_size == 0:
            c.error("missing", path / name, "file is empty")


def validate_tree(root: Path, *, quick: bool = False, layout: str = "v6", seeds: dict[str, int] | None = None,
                  test01_in_open: bool = True) -> list[Finding]:
    """Every finding for the submission tree at ``root`` (the folder holding ``open/`` or ``closed/``).

    ``test01_in_open=False`` (``--no-compliance``) accepts open results without TEST01, as the official
    checker does; the closed division always requires it."""
    root = Path(root)
    if not root.is_dir():
        raise HarnessError(f"{root}: not a directory (expected a submission tree holding open/ or closed/)")
    c = _Collector(root, quick, test01_in_open)
    seeds = seeds or official_seeds()
    divisions = [d for d in _dirs(root) if d.name in rules.DIVISIONS]
    if not divisions:
        c.error("missing", root, "no open/ or closed/ division folder")
    for path in sorted(root.iterdir()):
        if path.is_file() and path.suffix not in (".md", ".pdf"):
            c.error("missing", path, "only .md/.pdf files may sit beside the division folders")
        elif path.is_dir() and path.name not in rules.DIVISIONS:
            c.error("missing", path, "not a division (open, closed)")
    for division in divisions:
        for path in sorted(division.iterdir()):
            if path.is_file():
                c.error("missing", path, "files may not sit beside the submitter folders")
        for org in _dirs(division):
            _validate_org(c, org, division.name, layout, seeds)
    return c.findings


def _validate_org(c: _Collector, org: Path, division: str, layout: str, seeds: dict[str, int]) -> None:
    _hygiene(c, org)
    results = org / "results"
    systems = org / "systems"
    if not results.is_dir():
        c.error("missing", results, "no results/ folder")
        return
    code = org / ("src" if layout == "v6" else "code")
    if not code.is_dir():
        c.error("missing", code, f"no {code.name}/ folder (the checker requires the implementation's code or a pointer)")
    system_dirs = _dirs(results)
    for system_json in sorted(systems.glob("*.json")) if systems.is_dir() else []:
        if not (results / system_json.stem).is_dir():
            c.error("missing", system_json, "system description without results")
    for system_dir in system_dirs:
        system_json = systems / f"{system_dir.name}.json"
        description = _load_json(c, system_json, "system description")
        if description is not None:
            for problem in system_description_problems(description, division=division, submitter=org.name):
                c.error("missing", system_json, problem)
        system_type = (description or {}).get("system_type", "edge")
        for bench_dir in _dirs(system_dir):
            _validate_benchmark(c, org, bench_dir, division, layout, seeds, system_type)


def _hygiene(c: _Collector, org: Path) -> None:
    """check_results_dir's folder rules: names git and the review tools can handle, no empty folders,
    no file over 50 MB, no broken links."""
    for dirpath, dirnames, filenames in os.walk(org):
        here = Path(dirpath)
        if not dirnames and not filenames:
            c.error("missing", here, "empty directory")
        for name in dirnames + filenames:
            path = here / name
            if name.startswith("."):
                c.error("missing", path, "name starts with '.' (git-unfriendly)")
            if " " in name:
                c.error("missing", path, "name contains a space")
            if name == "__pycache__":
                c.error("missing", path, "__pycache__ directory")
            if path.is_symlink() and not path.exists():
                c.error("missing", path, "broken symbolic link")
        for name in filenames:
            path = here / name
            if path.is_file() and path.stat().st_size > rules.FILE_SIZE_LIMIT:
                c.error("missing", path, f"larger than {rules.FILE_SIZE_LIMIT // 2**20} MB")


def _load_json(c: _Collector, path: Path, what: str) -> dict | None:
    if not path.is_file():
        c.error("missing", path, f"{what} missing")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        c.error("missing", path, f"{what} is not valid JSON ({exc})")
        return None
    if not isinstance(data, dict):
        c.error("missing", path, f"{what} must be a JSON object")
        return None
    return data


def _validate_benchmark(c: _Collector, org: Path, bench_dir: Path, division: str, layout: str,
                        seeds: dict[str, int], system_type: str) -> None:
    benchmark = bench_dir.name
    if benchmark != rules.BENCHMARK:
        c.error("missing", bench_dir, f"benchmark folder must be named {rules.BENCHMARK!r} for this harness")
        return
    scenarios = [d.name for d in _dirs(bench_dir)]
    for scenario, problem in rules.scenario_set_problems(division, system_type, scenarios):
        c.error("missing", bench_dir / scenario if scenario else bench_dir, problem)
    for scenario in scenarios:
        if scenario in rules.ALL_SCENARIOS:
            _validate_scenario(c, org, bench_dir / scenario, division, layout, seeds)


def _measurement_paths(org: Path, scenario_dir: Path, layout: str) -> tuple[Path, Path | None]:
    system, benchmark, scenario = scenario_dir.parts[-3:]
    if layout == "v6":
        return scenario_dir, scenario_dir / "measurements.json"
    mdir = org / "measurements" / system / benchmark / scenario
    candidates = sorted(p for p in mdir.glob(f"{system}*.json")) if mdir.is_dir() else []
    return mdir, (candidates[0] if candidates else None)


def _validate_scenario(c: _Collector, org: Path, scenario_dir: Path, division: str, layout: str,
                       seeds: dict[str, int]) -> None:
    scenario = scenario_dir.name
    system, benchmark = scenario_dir.parts[-3], scenario_dir.parts[-2]
    # measurements: user.conf, README.md, measurements JSON with the implementation fields
    mdir, mjson = _measurement_paths(org, scenario_dir, layout)
    for name in rules.REQUIRED_MEASURE_FILES:
        path = mdir / name
        if not path.is_file():
            c.error("missing", path, "required measurement file missing")
        elif path.stat().st_size == 0:
            c.error("missing", path, "required measurement file is empty")
    if mjson is None:
        c.error("missing", mdir / f"{system}_<implementation>_{scenario}.json", "measurements JSON missing")
    else:
        data = _load_json(c, mjson, "measurements JSON")
        for key in rules.MEASUREMENTS_FIELDS if data is not None else ():
            if not data.get(key):
                c.error("missing", mjson, f"field {key!r} missing or empty")

    perf_dir = scenario_dir / "performance" / "run_1"
    _file_list_check(c, perf_dir, rules.REQUIRED_PERF_FILES, rules.OPTIONAL_PERF_FILES)
    if (perf_dir / DETAIL_LOG).is_file():
        _performance_checks(c, perf_dir / DETAIL_LOG, scenario, division, seeds, role="performance run")

    acc_dir = scenario_dir / "accuracy"
    _file_list_check(c, acc_dir, rules.REQUIRED_ACC_FILES)
    if acc_dir.is_dir():
        _accuracy_checks(c, acc_dir, division)

    test01 = (scenario_dir / "TEST01" if layout == "v6"
              else org / "compliance" / system / benchmark / scenario / "TEST01")
    if division in rules.TEST01_REQUIRED_DIVISIONS:
        _test01_checks(c, test01, scenario, division, seeds)
    elif test01.is_dir() or c.test01_in_open:
        with c.stricter(OPEN_TEST01_NOTE):  # the checker never looks at TEST01 in the open division
            _test01_checks(c, test01, scenario, division, seeds)
    else:
        c.warn("missing", test01, "no TEST01 (--no-compliance): accepted in the open division, as the official "
               "checker does; the results were not audited for accuracy in performance mode")


def _detail(c: _Collector, path: Path) -> dict | None:
    try:
        return read_detail_log(path)
    except HarnessError as exc:
        c.error("missing", path, str(exc))
        return None


def _performance_checks(c: _Collector, detail_path: Path, scenario: str, division: str, seeds: dict[str, int],
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


def _accuracy_checks(c: _Collector, acc_dir: Path, division: str) -> None:
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


def _test01_checks(c: _Collector, test01: Path, scenario: str, division: str, seeds: dict[str, int]) -> None:
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
    _file_list_check(c, acc_dir, required)
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
    _file_list_check(c, perf_dir, rules.REQUIRED_COMPLIANCE_PERF_FILES, ("mlperf_log_accuracy.json",))
    if (perf_dir / DETAIL_LOG).is_file():
        _performance_checks(c, perf_dir / DETAIL_LOG, scenario, division, seeds, role="TEST01 run")
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


def summarize(findings: list[Finding]) -> str:
    errors = [f for f in findings if f.level == "error"]
    warnings = [f for f in findings if f.level == "warning"]
    lines = [str(f) for f in errors + warnings]
    stricter = sum(f.stricter for f in errors)
    lines.append(f"{len(errors)} error(s), {len(warnings)} warning(s)"
                 + (f"; {stricter} error(s) {STRICTER_MARK}" if stricter else ""))
    return "\n".join(lines)


def stricter_section(findings: list[Finding]) -> str:
    """The part of validation.md that lists where this validator is stricter than the official checker."""
    lines = [f"## Where this validator is {STRICTER_MARK}", "",
             "Deliberately stricter rules (the official checker's behaviour in the last column):", "",
             "| division | rule here | official checker |", "|---|---|---|"]
    lines += [f"| {where} | {rule} | {note} |" for where, rule, note in STRICTER_RULES]
    flagged = [f for f in findings if f.stricter and f.level == "error"]
    lines += ["", "Findings in this tree that the official checker would not report:", ""]
    lines += [f"- `{f.path}`: {f.message}" for f in flagged] or ["- none"]
    return "\n".join(lines) + "\n"
