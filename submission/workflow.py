"""From runs to a packaged tree: select or run what is missing, verify TEST01, assemble, validate."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from harness.errors import ConfigError
from harness.rundir import RUN_JSON
from harness.run_record import UNTRAINED_NOTE
from submission import rules
from submission.compliance import (
    Test01Result,
    read_log_entries,
    run_test01_verification,
    squad_subset_scorer,
)
from submission.layout import Layout
from submission.official import CSV_NAME as OFFICIAL_CSV_NAME
from submission.official import LOG_NAME as OFFICIAL_LOG_NAME
from submission.official import locate_checker, run_official_checker, verdict_section
from submission.package import PackageRequest, PackageResult, assemble
from submission.runs import (
    ROLES,
    ROLES_WITHOUT_COMPLIANCE,
    RunContext,
    ScenarioRuns,
    candidate_run_dirs,
    complete_runs,
    select_runs,
)
from submission.system import build_system_description, load_template, slugify
from submission.findings import STRICTER_MARK
from squad.data import DATA_NOTES

log = logging.getLogger(__name__)

ALLOW_FLAGS = {"accuracy": "--allow-below-target", "invalid": "--allow-invalid", "missing": "--allow-missing"}
NO_COMPLIANCE_NOTE = ("TEST01 compliance test skipped (--no-compliance; the open division does not require it): "
                      "the results were not audited for accuracy in performance mode")


def implementation_name(ctx: RunContext) -> str:
    return slugify(f"{ctx.engine.backend}-{ctx.model.manifest.get('name') or ctx.model.model_dir.name}")


def resolve_scenarios(requested: list[str] | None, selected_server: bool, division: str = "open") -> list[str]:
    scenarios = list(requested or rules.EDGE_SUITE)
    for scenario in scenarios:
        if scenario not in rules.ALL_SCENARIOS:
            raise ConfigError(f"--scenarios: {scenario!r} is not a bert-99 scenario ({', '.join(rules.ALL_SCENARIOS)})")
    if requested is None and selected_server:
        if division == "open":
            scenarios.append("Server")  # Server results are included when the user's runs have them
        else:
            log.info("a matching Server run was found, but the closed bert-99 edge suite has no Server: not packaged")
    return scenarios


def preflight(*, division: str, scenarios: list[str] | None, system_type: str | None, no_compliance: bool,
              official_checker: Path | None, allow: frozenset[str] = frozenset()) -> Path | None:
    """Everything that can refuse a request before any run starts (a refusal after 30 minutes of runs that
    was known at the start helps nobody). Returns ``tools/submission`` of the official checker, if given."""
    if division not in rules.DIVISIONS:
        raise ConfigError(f"--division {division!r}: expected one of {', '.join(rules.DIVISIONS)}")
    if no_compliance and division != "open":
        raise ConfigError(f"--no-compliance: TEST01 is required in the {division} division; the flag is allowed "
                          "only with --division open")
    wanted = list(scenarios or rules.EDGE_SUITE)
    problems = rules.scenario_set_problems(division, system_type or "edge", wanted)
    if problems and "missing" not in allow:
        raise ConfigError(f"--scenarios {','.join(wanted)} cannot be packaged in the {division} division: "
                          + "; ".join(message for _, message in problems)
                          + " (or accept an incomplete package with --allow-missing)")
    return locate_checker(Path(official_checker)) if official_checker else None


def _notes(ctx: RunContext, records: dict[str, dict[str, dict]], test01: dict[str, Test01Result],
           allow: frozenset[str], no_compliance: bool = False) -> tuple[list[str], dict[str, str]]:
    notes = []
    if ctx.model.trained is False:
        notes.append(UNTRAINED_NOTE)
    if ctx.dataset.kind in DATA_NOTES:
        notes.append(DATA_NOTES[ctx.dataset.kind])
    if ctx.quick or any(r["performance"]["settings"].get("overrides") for r in records.values()):
        notes.append(f"NOT COMPLIANT: runs with LoadGen overrides ({'--quick: ' if ctx.quick else ''}"
                     f"{len(ctx.features)} features, shortened durations); for trying the tool only")
    if no_compliance:
        notes.append(NO_COMPLIANCE_NOTE)
    per_scenario: dict[str, str] = {}
    for scenario, recs in records.items():
        parts = []
        f1 = (recs["accuracy"].get("accuracy") or {}).get("f1")
        if f1 is not None and not rules.accuracy_target_met(f1):
            parts.append(
                f"accuracy F1 {f1:.3f} is below the bert-99 target {rules.ACCURACY_TARGET_F1:.3f}"
                + (" because the model weights are untrained" if ctx.model.trained is False else "")
                + ("; packaged anyway with --allow-below-target" if "accuracy" in allow else "")
            )
        validity = (recs["performance"].get("results") or {}).get("validity")
        if validity != "VALID":
            parts.append(f"performance run {validity}" + ("; packaged with --allow-invalid" if "invalid" in allow else ""))
        result = test01.get(scenario)
        if result is not None and not result.passed:
            failed = [n for n, ok in (("accuracy", result.accuracy.passed), ("performance", result.performance.passed))
                      if not ok]
            parts.append(f"TEST01 {'/'.join(failed)} check failed" + ("; packaged with --allow-invalid" if "invalid" in allow else ""))
        per_scenario[scenario] = "; ".join(parts)
    return notes, per_scenario


def _accepted_notes(records: dict[str, dict[str, dict]], test01: dict[str, Test01Result],
                    allow: frozenset[str]) -> list[str]:
    """One line per accepted failure kind, for the system description's sw_notes."""
    notes = []
    below = [s for s, r in records.items()
             if not rules.accuracy_target_met((r["accuracy"].get("accuracy") or {}).get("f1") or 0.0)]
    if below and "accuracy" in allow:
        notes.append(f"bert-99 accuracy target NOT met ({', '.join(below)}); packaged with --allow-below-target")
    failed = [s for s, r in records.items() if (r["performance"].get("results") or {}).get("validity") != "VALID"
              or (s in test01 and not test01[s].passed)]
    if failed and "invalid" in allow:
        notes.append(f"INVALID result or failed TEST01 ({', '.join(failed)}); packaged with --allow-invalid")
    return notes


def make_submission(
    ctx: RunContext, *, output: Path, division: str = "open", submitter: str | None = None,
    system_template: Path | None = None, scenarios: list[str] | None = None, from_runs: list[Path] | None = None,
    layout: str = "v6", allow: frozenset[str] = frozenset(), command_line: str = "python -m submission",
    no_compliance: bool = False, official_checker: Path | None = None,
) -> PackageResult:
    """Everything `python -m submission` does, for a prepared :class:`RunContext`.

    ``no_compliance`` skips TEST01 (open division only); ``official_checker`` (a clone of mlcommons/inference)
    runs the official checker on the packaged tree and records its verdict beside the validator's."""
    template = load_template(system_template)
    submitter = submitter or template.get("submitter")
    if not submitter:
        raise ConfigError("no submitter: pass --submitter ORG or set \"submitter\" in the system template")
    if Path(output).exists():
        raise ConfigError(f"--output {output}: already exists; refusing to overwrite it")
    system_type = template.get("system_type")
    checker_tools = preflight(division=division, scenarios=scenarios, system_type=system_type,
                              no_compliance=no_compliance, official_checker=official_checker, allow=allow)
    roles = ROLES_WITHOUT_COMPLIANCE if no_compliance else ROLES
    candidates = candidate_run_dirs(list(from_runs or []))
    probe, _ = select_runs(ctx, list(rules.ALL_SCENARIOS), candidates, roles)
    # Server is added from --from-runs in the open division only, where any set of scenarios is accepted
    wanted = resolve_scenarios(scenarios, selected_server="performance" in probe["Server"].runs, division=division)
    selected, skipped = select_runs(ctx, wanted, candidates, roles)
    for line in skipped:
        log.info("%s", line)
    for scenario, runs in selected.items():
        for role, path in runs.runs.items():
            log.info("reusing %s %s run %s", scenario, role, path)
    complete_runs(ctx, selected)

    records = {s: {role: json.loads((path / RUN_JSON).read_text()) for role, path in runs.runs.items()}
               for s, runs in selected.items()}
    scorer = squad_subset_scorer(ctx.features)
    test01: dict[str, Test01Result] = {}
    test01_scores: dict[str, dict] = {}
    for scenario, runs in selected.items():
        if "TEST01" not in runs.runs:  # --no-compliance
            continue
        result = run_test01_verification(runs.runs["performance"], runs.runs["accuracy"], runs.runs["TEST01"],
                                         scorer=scorer)
        test01[scenario] = result
        sampled = {q: bytes.fromhex(d) for q, d in read_log_entries(runs.runs["TEST01"] / "mlperf_log_accuracy.json")}
        test01_scores[scenario] = result.accuracy.compliance or scorer(sampled)
        log.info("TEST01 %s: accuracy %s, performance %s", scenario,
                 "PASS" if result.accuracy.passed else "FAIL", "PASS" if result.performance.passed else "FAIL")

    notes, scenario_notes = _notes(ctx, records, test01, allow, no_compliance)
    cluster = next((r["performance"]["backend"].get("cluster") for r in records.values()
                    if r["performance"]["backend"].get("cluster")), None)
    description = build_system_description(
        template, division=division, submitter=submitter, backend=ctx.engine.backend, cluster=cluster,
        extra_sw_notes=[n for n in notes if n.startswith("NOT COMPLIANT") or "UNTRAINED" in n or n == NO_COMPLIANCE_NOTE]
        + _accepted_notes(records, test01, allow),
    )
    system_id = template.get("system_id") or slugify(str(description["system_name"]))
    package_layout = Layout(layout, Path(output), division, str(description["submitter"]), str(system_id),
                            implementation_name(ctx))
    request = PackageRequest(
        output=Path(output), layout=package_layout, system_description=description, scenario_runs=selected,
        test01=test01, test01_scores=test01_scores, records=records, quick=ctx.quick, command_line=command_line,
        allow=allow, notes=notes, scenario_notes=scenario_notes, test01_skipped=no_compliance,
    )
    result = assemble(request)
    if checker_tools is not None:
        # after our verdict (accepted or REFUSED); the official one is recorded, never acted upon
        docs = result.path / package_layout.documentation_dir.relative_to(package_layout.root)
        result.official = run_official_checker(checker_tools, result.path, str(description["submitter"]),
                                               docs / OFFICIAL_LOG_NAME, csv_copy=docs / OFFICIAL_CSV_NAME)
        with (docs / "validation.md").open("a") as validation:
            validation.write("\n" + verdict_section(result.official))
    return result


def print_result(result: PackageResult) -> None:
    for finding in result.findings:
        print(finding)
    errors = sum(f.level == "error" for f in result.findings)
    warnings = sum(f.level == "warning" for f in result.findings)
    stricter = sum(f.stricter for f in result.blocking)
    if result.accepted:
        accepted = errors - len(result.blocking)
        print(f"PACKAGED {result.path}: {errors} error(s) ({accepted} accepted on the command line), {warnings} warning(s)")
    else:
        flags = sorted({ALLOW_FLAGS.get(f.category, "--allow-invalid") for f in result.blocking})
        print(f"REFUSED: {len(result.blocking)} error(s) block this package"
              + (f" ({stricter} of them only because this validator is stricter than the official checker)"
                 if stricter else "")
              + f"; the tree is kept for inspection in {result.path}. Fix them, or accept them explicitly with "
              f"{' '.join(flags)}.")
    if result.official is not None:
        print("Verdicts:")
        print(f"  local validator: {'packaged' if result.accepted else 'REFUSED'} "
              f"({len(result.blocking)} blocking error(s), {stricter} {STRICTER_MARK})")
        print("  " + result.official.summary().replace("\n", "\n  "))


__all__ = ["make_submission", "preflight", "print_result", "ScenarioRuns"]
