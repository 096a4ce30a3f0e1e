"""Local validator: the submission checker's checks that apply to ``bert-99``, per division, with clear messages.

Mirrors mlcommons/inference ``tools/submission/submission_checker`` (``check_results_dir`` and ``checks/*.py``).
This module walks the tree (folders, system description, measurement files); :mod:`submission.log_checks` reads the
LoadGen logs of each scenario; :mod:`submission.findings` holds what they report (docs/submission.md lists the
categories and where this validator is stricter than the checker).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.errors import HarnessError
from harness.loadgen_logs import DETAIL_LOG
from harness.sysinfo import REPO_ROOT
from submission import rules
from submission.findings import OPEN_TEST01_NOTE, Collector, Finding, dirs, file_list_check
from submission.log_checks import accuracy_checks, performance_checks, test01_checks
from submission.system import system_description_problems


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


def validate_tree(root: Path, *, quick: bool = False, layout: str = "v6", seeds: dict[str, int] | None = None,
                  test01_in_open: bool = True) -> list[Finding]:
    """Every finding for the submission tree at ``root`` (the folder holding ``open/`` or ``closed/``).

    ``test01_in_open=False`` (``--no-compliance``) accepts open results without TEST01, as the official
    checker does; the closed division always requires it."""
    root = Path(root)
    if not root.is_dir():
        raise HarnessError(f"{root}: not a directory (expected a submission tree holding open/ or closed/)")
    c = Collector(root, quick, test01_in_open)
    seeds = seeds or official_seeds()
    divisions = [d for d in dirs(root) if d.name in rules.DIVISIONS]
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
        for org in dirs(division):
            _validate_org(c, org, division.name, layout, seeds)
    return c.findings


def _validate_org(c: Collector, org: Path, division: str, layout: str, seeds: dict[str, int]) -> None:
    _hygiene(c, org)
    results = org / "results"
    systems = org / "systems"
    if not results.is_dir():
        c.error("missing", results, "no results/ folder")
        return
    code = org / ("src" if layout == "v6" else "code")
    if not code.is_dir():
        c.error("missing", code, f"no {code.name}/ folder (the checker requires the implementation's code or a pointer)")
    system_dirs = dirs(results)
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
        for bench_dir in dirs(system_dir):
            _validate_benchmark(c, org, bench_dir, division, layout, seeds, system_type)


def _hygiene(c: Collector, org: Path) -> None:
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


def _load_json(c: Collector, path: Path, what: str) -> dict | None:
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


def _validate_benchmark(c: Collector, org: Path, bench_dir: Path, division: str, layout: str,
                        seeds: dict[str, int], system_type: str) -> None:
    benchmark = bench_dir.name
    if benchmark != rules.BENCHMARK:
        c.error("missing", bench_dir, f"benchmark folder must be named {rules.BENCHMARK!r} for this harness")
        return
    scenarios = [d.name for d in dirs(bench_dir)]
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


def _validate_scenario(c: Collector, org: Path, scenario_dir: Path, division: str, layout: str,
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
    file_list_check(c, perf_dir, rules.REQUIRED_PERF_FILES, rules.OPTIONAL_PERF_FILES)
    if (perf_dir / DETAIL_LOG).is_file():
        performance_checks(c, perf_dir / DETAIL_LOG, scenario, division, seeds, role="performance run")

    acc_dir = scenario_dir / "accuracy"
    file_list_check(c, acc_dir, rules.REQUIRED_ACC_FILES)
    if acc_dir.is_dir():
        accuracy_checks(c, acc_dir, division)

    test01 = (scenario_dir / "TEST01" if layout == "v6"
              else org / "compliance" / system / benchmark / scenario / "TEST01")
    if division in rules.TEST01_REQUIRED_DIVISIONS:
        test01_checks(c, test01, scenario, division, seeds)
    elif test01.is_dir() or c.test01_in_open:
        with c.stricter(OPEN_TEST01_NOTE):  # the checker never looks at TEST01 in the open division
            test01_checks(c, test01, scenario, division, seeds)
    else:
        c.warn("missing", test01, "no TEST01 (--no-compliance): accepted in the open division, as the official "
               "checker does; the results were not audited for accuracy in performance mode")
