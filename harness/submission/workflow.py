"""From runs to a packaged tree: select or run what is missing, verify TEST01, assemble, validate."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from harness.errors import ConfigError
from harness.rundir import RUN_JSON
from harness.runner import SAMPLE_DATA_NOTE, UNTRAINED_NOTE
from harness.submission import rules
from harness.submission.compliance import (
    Test01Result,
    read_log_entries,
    run_test01_verification,
    squad_subset_scorer,
)
from harness.submission.layout import Layout
from harness.submission.package import PackageRequest, PackageResult, assemble
from harness.submission.runs import RunContext, ScenarioRuns, candidate_run_dirs, complete_runs, select_runs
from harness.submission.system import build_system_description, load_template, slugify

log = logging.getLogger(__name__)

ALLOW_FLAGS = {"accuracy": "--allow-below-target", "invalid": "--allow-invalid", "missing": "--allow-missing"}


def implementation_name(ctx: RunContext) -> str:
    return slugify(f"{ctx.engine.backend}-{ctx.model.manifest.get('name') or ctx.model.model_dir.name}")


def resolve_scenarios(requested: list[str] | None, selected_server: bool) -> list[str]:
    scenarios = list(requested or rules.REQUIRED_SCENARIOS)
    for scenario in scenarios:
        if scenario not in rules.ALL_SCENARIOS:
            raise ConfigError(f"--scenarios: {scenario!r} is not a bert-99 scenario ({', '.join(rules.ALL_SCENARIOS)})")
    if requested is None and selected_server:
        scenarios.append("Server")  # Server results are included when the user's runs have them
    return scenarios


def _notes(ctx: RunContext, records: dict[str, dict[str, dict]], test01: dict[str, Test01Result],
           allow: frozenset[str]) -> tuple[list[str], dict[str, str]]:
    notes = []
    if ctx.model.trained is False:
        notes.append(UNTRAINED_NOTE)
    if not ctx.dataset.official:
        notes.append(SAMPLE_DATA_NOTE)
    if ctx.quick or any(r["performance"]["settings"].get("overrides") for r in records.values()):
        notes.append(f"NOT COMPLIANT: runs with LoadGen overrides ({'--quick: ' if ctx.quick else ''}"
                     f"{len(ctx.features)} features, shortened durations); for trying the tool only")
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
        result = test01[scenario]
        if not result.passed:
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
              or not test01[s].passed]
    if failed and "invalid" in allow:
        notes.append(f"INVALID result or failed TEST01 ({', '.join(failed)}); packaged with --allow-invalid")
    return notes


def make_submission(
    ctx: RunContext, *, output: Path, division: str = "open", submitter: str | None = None,
    system_template: Path | None = None, scenarios: list[str] | None = None, from_runs: list[Path] | None = None,
    layout: str = "v6", allow: frozenset[str] = frozenset(), command_line: str = "python -m harness submission",
) -> PackageResult:
    """Everything `python -m harness submission` does, for a prepared :class:`RunContext`."""
    template = load_template(system_template)
    submitter = submitter or template.get("submitter")
    if not submitter:
        raise ConfigError("no submitter: pass --submitter ORG or set \"submitter\" in the system template")
    if Path(output).exists():
        raise ConfigError(f"--output {output}: already exists; refusing to overwrite it")
    candidates = candidate_run_dirs(list(from_runs or []))
    wanted = resolve_scenarios(scenarios, selected_server=False)
    probe, _ = select_runs(ctx, list(rules.ALL_SCENARIOS), candidates)
    wanted = resolve_scenarios(scenarios, selected_server="performance" in probe["Server"].runs)
    selected, skipped = select_runs(ctx, wanted, candidates)
    for line in skipped:
        log.info("%s", line)
    for scenario, runs in selected.items():
        for role, path in runs.runs.items():
            log.info("reusing %s %s run %s", scenario, role, path)
    complete_runs(ctx, selected)

    records = {s: {role: json.loads((path / RUN_JSON).read_text()) for role, path in runs.runs.items()}
               for s, runs in selected.items()}
    scorer = squad_subset_scorer(ctx.features, ctx.dataset.dev_json)
    test01: dict[str, Test01Result] = {}
    test01_scores: dict[str, dict] = {}
    for scenario, runs in selected.items():
        result = run_test01_verification(runs.runs["performance"], runs.runs["accuracy"], runs.runs["TEST01"],
                                         scorer=scorer)
        test01[scenario] = result
        sampled = {q: bytes.fromhex(d) for q, d in read_log_entries(runs.runs["TEST01"] / "mlperf_log_accuracy.json")}
        test01_scores[scenario] = result.accuracy.compliance or scorer(sampled)
        log.info("TEST01 %s: accuracy %s, performance %s", scenario,
                 "PASS" if result.accuracy.passed else "FAIL", "PASS" if result.performance.passed else "FAIL")

    notes, scenario_notes = _notes(ctx, records, test01, allow)
    description = build_system_description(
        template, division=division, submitter=submitter, backend=ctx.engine.backend,
        extra_sw_notes=[n for n in notes if n.startswith("NOT COMPLIANT") or "UNTRAINED" in n] + _accepted_notes(
            records, test01, allow),
    )
    system_id = template.get("system_id") or slugify(str(description["system_name"]))
    package_layout = Layout(layout, Path(output), division, str(description["submitter"]), str(system_id),
                            implementation_name(ctx))
    request = PackageRequest(
        output=Path(output), layout=package_layout, system_description=description, scenario_runs=selected,
        test01=test01, test01_scores=test01_scores, records=records, quick=ctx.quick, command_line=command_line,
        allow=allow, notes=notes, scenario_notes=scenario_notes,
    )
    return assemble(request)


def print_result(result: PackageResult) -> None:
    for finding in result.findings:
        print(finding)
    errors = sum(f.level == "error" for f in result.findings)
    warnings = sum(f.level == "warning" for f in result.findings)
    if result.accepted:
        accepted = errors - len(result.blocking)
        print(f"PACKAGED {result.path}: {errors} error(s) ({accepted} accepted on the command line), {warnings} warning(s)")
    else:
        flags = sorted({ALLOW_FLAGS.get(f.category, "--allow-invalid") for f in result.blocking})
        print(f"REFUSED: {len(result.blocking)} error(s) block this package; the tree is kept for inspection in "
              f"{result.path}. Fix them, or accept them explicitly with {' '.join(flags)}.")


__all__ = ["make_submission", "print_result", "ScenarioRuns"]
