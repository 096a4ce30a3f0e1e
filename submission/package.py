"""Assembling the submission tree from complete runs, then validating it.

The tree is built in ``<output>.incomplete`` (marked by ``INCOMPLETE.md``), validated, and only then
renamed to ``<output>``. A tree the validator refuses (and the user did not accept with an explicit
flag) is renamed ``<output>.REFUSED`` with ``REFUSED.md`` saying why. Nothing that exists is ever
deleted or overwritten: an existing output (or staging) directory is refused up front.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends.cluster import RayOptions
from harness.backends.registry import engine
from harness.errors import ConfigError
from harness.loadgen_logs import ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG
from harness.options import to_flags
from harness.engine_settings import EngineSettings
from harness.scenarios import SutOptions
from harness.loadgen_settings import LoadGenOverrides
from submission import rules
from submission.compliance import Test01Result, accuracy_line, write_test01_dir
from submission.layout import Layout
from submission.official import CheckerVerdict
from submission.report import csv_table, markdown_table, result_rows
from submission.runs import ScenarioRuns
from submission.findings import Finding, stricter_section, summarize
from submission.validate import validate_tree

INCOMPLETE_MARKER = "INCOMPLETE.md"
REFUSED_MARKER = "REFUSED.md"
REPOSITORY_HINT = "the oBERT-MobileBERT MLPerf harness repository"


@dataclass
class PackageRequest:
    output: Path
    layout: Layout
    system_description: dict
    scenario_runs: dict[str, ScenarioRuns]
    test01: dict[str, Test01Result]
    test01_scores: dict[str, dict]  # subset accuracy of each TEST01 log (TEST01/accuracy/accuracy.txt)
    records: dict[str, dict[str, dict]]  # scenario -> role -> run.json
    quick: bool
    command_line: str
    allow: frozenset[str] = frozenset()  # validator categories the user accepted explicitly
    notes: list[str] = field(default_factory=list)  # package-level notes (untrained model, --quick...)
    scenario_notes: dict[str, str] = field(default_factory=dict)
    test01_skipped: bool = False  # --no-compliance (open division): no TEST01 runs, no TEST01/ folders


@dataclass
class PackageResult:
    path: Path
    accepted: bool
    findings: list[Finding]
    blocking: list[Finding]
    official: CheckerVerdict | None = None  # the official checker's verdict, with --official-checker


def truncate_accuracy_log(source: Path, dest: Path) -> str:
    """Copy the accuracy log truncated as truncate_accuracy_log.py does (4 KiB head + 4 KiB tail) when it
    is larger than the checker allows; returns the sha256 of the full original for accuracy.txt."""
    data = Path(source).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) <= rules.MAX_ACCURACY_LOG_SIZE:
        dest.write_bytes(data)
    else:
        view = rules.TRUNCATE_VIEWABLE_SIZE
        dest.write_bytes(data[:view] + b"\n\n...\n\n" + data[-view:])
    return digest


def run_command(record: dict) -> str:
    """The `python -m harness run` command equivalent to a recorded run (TEST01 needs the audit.config,
    which only `python -m submission` passes)."""
    settings = record.get("settings", {})
    options = settings.get("backend_options", {})
    sut = settings.get("sut_options", {})
    args = ["python", "-m", "harness", "run", "--scenario", record["scenario"], "--mode", record["mode"],
            "--backend", record["backend"]["backend"], "--model", record["model"]["path"],
            "--data-dir", str(Path(record["dataset"]["dev_json"]).parent)]
    fingerprint = str(record.get("qsl", {}).get("fingerprint", ""))
    if ":first" in fingerprint:
        args += ["--count", fingerprint.split(":first", 1)[1]]
    # the flags, as their declarations spell them, that give the recorded settings
    buckets = options.get("sequence_buckets")
    tokens = record["scenario"] == "Server" and sut.get("server_policy") == "tokens"
    layout = {"batch_size": options.get("batch_size"), "num_streams": options.get("num_streams"),
              "num_cores": options.get("num_cores"),
              "packing": True if options.get("packing") else False if tokens else None,
              "buckets": None if options.get("packing") else tuple(buckets) if buckets else ()}
    args += to_flags(EngineSettings, layout)
    args += to_flags(engine(record["backend"]["backend"]).options_type(), options.get("engine") or {})
    args += to_flags(SutOptions, sut) + to_flags(RayOptions, options.get("ray") or {})
    args += to_flags(LoadGenOverrides, settings.get("overrides", {}))
    return shlex.join(args)


def _measurements(request: PackageRequest, scenario: str) -> dict:
    """measurements.json (the checker's SYSTEM_IMP_REQUIRED_FILES fields, all non-empty)."""
    model = request.records[scenario]["performance"]["model"]
    trained = model.get("trained")
    precision = model.get("precision") or "fp32"
    transformations = []
    if model.get("num_layers"):
        transformations.append(f"layer dropping to {model['num_layers']} encoder layers")
    if model.get("sparsity"):
        transformations.append(f"4-block structured pruning (oBERT), {100 * float(model['sparsity']):.0f}% sparsity")
    if precision == "int8":
        transformations.append("INT8 quantization-aware training (QAT)")
    if trained is False:
        starting = f"none: random initialization (untrained benchmark model {model.get('name')})"
        retraining = "no (untrained benchmark model: architecture, sparsity and precision are real, weights are random)"
    else:
        starting = f"{model.get('name')} ({Path(model['path']).name})"
        retraining = "yes (oBERT gradual pruning with distillation, then INT8 QAT)" if transformations else "unknown"
    return {
        "input_data_types": "int64",
        "retraining": retraining,
        "starting_weights_filename": starting,
        "weight_data_types": precision,
        "weight_transformations": ", ".join(transformations) or "none",
        "implementation": request.layout.implementation,
        "model": model.get("name"),
        "notes": "; ".join(n for n in [request.scenario_notes.get(scenario, ""), *request.notes] if n),
    }


def _scenario_readme(request: PackageRequest, scenario: str) -> str:
    recs = request.records[scenario]
    perf, acc = recs["performance"], recs["accuracy"]
    model = perf["model"]
    runs = request.scenario_runs[scenario]
    results = perf.get("results", {})
    accuracy = acc.get("accuracy", {})
    commit = (perf.get("harness") or {}).get("commit")
    facts = [f"{model.get('precision') or 'fp32'}"]
    if model.get("sparsity") is not None:
        facts.append(f"{100 * float(model['sparsity']):.0f}% sparse")
    if model.get("num_layers"):
        facts.append(f"{model['num_layers']} layers")
    if scenario == "Offline":
        headline = f"{results.get('samples_per_second')} samples/s"
    elif scenario == "SingleStream":
        headline = (f"early-stopping p90 latency {results.get('early_stopping_p90_latency_ms')} ms "
                    f"(p90 {(results.get('latency_ms') or {}).get('p90')} ms)")
    else:
        headline = (f"{results.get('target_qps')} target QPS, p99 {(results.get('latency_ms') or {}).get('p99')} ms, "
                    f"{results.get('samples_per_second')} samples/s completed")
    lines = [
        f"# {rules.BENCHMARK} {scenario}: {request.layout.system} / {request.layout.implementation}",
        "",
        f"- Model: `{model.get('name')}` ({', '.join(facts)})"
        + (" - UNTRAINED weights: accuracy is meaningless, speed is real" if model.get("trained") is False else ""),
        f"- Backend: {perf['backend'].get('backend')} {perf['backend'].get('version', '')}; "
        f"engine settings {json.dumps(perf['settings'].get('backend_options'))}",
        f"- Harness commit: `{commit}` ({REPOSITORY_HINT}); LoadGen {(perf.get('loadgen') or {}).get('version')}",
        f"- Dataset: SQuAD v1.1 dev, {perf['qsl']['features']} features "
        f"({'official file' if perf['dataset'].get('official') else 'NOT the official file'})",
        f"- Performance: {headline}, {results.get('validity')}",
        f"- Accuracy: F1 {accuracy.get('f1')}, EM {accuracy.get('exact_match')} "
        f"(target F1 >= {rules.ACCURACY_TARGET_F1:.3f})",
    ]
    notes = [n for n in [request.scenario_notes.get(scenario)] + request.notes if n]
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    lines += [
        "", "## Reproduce", "",
        f"Check out commit `{commit}` of the harness; `./run_offline.sh --help` sets up `.venv` on first use.",
        "Point `--data-dir` at a directory holding `dev-v1.1.json` and the BERT uncased vocab.", "",
        "```shell",
        "# performance run", run_command(perf), "",
        "# accuracy run (writes accuracy.txt)", run_command(acc), "",
        "# this package (TEST01 skipped with --no-compliance):" if request.test01_skipped else
        "# TEST01 (performance mode with the bert audit.config), its verification, and this package:",
        request.command_line,
        "```", "",
        "Run directories used (reused ones were found with --from-runs):", "",
    ]
    lines += [f"- {role}: `{path}`{' (reused)' if runs.reused.get(role) else ''}" for role, path in runs.runs.items()]
    return "\n".join(lines) + "\n"


def _code_readme(request: PackageRequest) -> str:
    perf = next(iter(request.records.values()))["performance"]
    commit = (perf.get("harness") or {}).get("commit")
    dirty = bool(commit and commit.endswith("-dirty"))
    return "\n".join([
        f"# {rules.BENCHMARK} implementation: {request.layout.implementation}",
        "",
        f"The code is the MLPerf harness of {REPOSITORY_HINT}, at git commit `{commit}`"
        + (" (the checkout had uncommitted changes when the runs were made)" if dirty else "") + ".",
        "",
        "- `harness/`: LoadGen SUT/QSL over DeepSparse or ONNX Runtime, SQuAD v1.1 features (384 tokens, "
        "stride 128, query 64), accuracy post-processing as the MLPerf BERT reference does it.",
        "- `compression/`: the oBERT pipeline that builds the model (layer dropping, 4-block pruning, INT8 QAT).",
        f"- Model: `{perf['model'].get('name')}`; backend {perf['backend'].get('backend')} "
        f"{perf['backend'].get('version', '')}.",
        "",
        "Runs, TEST01 and this package were produced with:",
        "",
        "```shell",
        request.command_line,
        "```",
        "",
    ])


def _documentation(request: PackageRequest, rows: list[dict]) -> dict[str, str]:
    layout = request.layout
    description = request.system_description
    scenarios = list(request.scenario_runs)
    readme = [
        f"# {layout.submitter}: {rules.BENCHMARK} on {description.get('system_name')}",
        "",
        f"Division: **{layout.division}**. Benchmark `{rules.BENCHMARK}` (SQuAD v1.1, F1 target "
        f"{rules.ACCURACY_TARGET_F1:.3f}); implementation `{layout.implementation}`; scenarios "
        f"{', '.join(scenarios)}. Packaged {time.strftime('%Y-%m-%d %H:%M:%S %z')} for the {rules.CHECKER_VERSION} "
        f"submission checker ({layout.name} layout).",
        "",
    ]
    if request.notes or request.scenario_notes:
        readme += ["## Notes", "", *(f"- {n}" for n in request.notes),
                   *(f"- {s}: {n}" for s, n in request.scenario_notes.items() if n), ""]
    readme += [
        "## Results", "", markdown_table(rows),
        "## Layout", "",
        f"- `systems/{layout.system}.json`: system description",
        f"- `{layout.relative(layout.code_dir).split('/', 2)[-1]}/`: pointer to the harness version used",
        f"- `results/{layout.system}/{rules.BENCHMARK}/<scenario>/`: performance/run_1, accuracy, "
        + ("measurements.json, README.md (reproduce), user.conf, mlperf.conf"
           + ("" if request.test01_skipped else ", TEST01") if layout.name == "v6"
           else "with measurements/ and compliance/ beside results/ (v5 layout)"),
        "- `documentation/`: this file, results.md/.csv, calibration.md, validation.md (local validator, "
        "and the official checker's verdict and log when it was run)",
        "",
        "## Workflow", "",
        "```shell", request.command_line, "```", "",
    ]
    calibration = "\n".join([
        "# Calibration and quantization",
        "",
        "The INT8 model is produced by quantization-aware training (QAT) in the compression pipeline "
        "(`compression/recipes/`), not by post-training calibration: no calibration data set is used. The "
        "quantization ranges are learned on the training data during QAT with the pruning masks fixed.",
        "",
        "For the untrained benchmark model (random weights), the QAT graph is built from synthetic batches; "
        "its accuracy is meaningless and is reported as such.",
        "",
    ])
    return {"README.md": "\n".join(readme), "results.md": markdown_table(rows), "results.csv": csv_table(rows),
            "calibration.md": calibration}


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def _claim(path: Path) -> Path:
    """Create ``path`` exclusively (refusing any existing path)."""
    try:
        path.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; refusing to write into it (choose another --output)") from None
    return path


def assemble(request: PackageRequest) -> PackageResult:
    """Build, validate, and accept (rename to ``output``) or refuse (rename to ``output.REFUSED``)."""
    output = Path(request.output)
    staging = output.with_name(output.name + ".incomplete")
    refused = output.with_name(output.name + ".REFUSED")
    for path in (output, staging, refused):
        if path.exists():
            raise ConfigError(f"{path}: already exists; refusing to overwrite it (choose another --output)")
    _claim(staging)
    (staging / INCOMPLETE_MARKER).write_text(
        "# Incomplete submission package\n\nThe harness was still assembling this tree (or stopped while doing so). "
        "Do not submit it.\n"
    )
    layout = Layout(request.layout.name, staging, request.layout.division, request.layout.submitter,
                    request.layout.system, request.layout.implementation)
    _write_json(layout.system_json, request.system_description)
    layout.code_dir.mkdir(parents=True)
    (layout.code_dir / "README.md").write_text(_code_readme(request))

    for scenario, runs in request.scenario_runs.items():
        perf_run, acc_run, test01_run = (runs.runs.get(r) for r in ("performance", "accuracy", "TEST01"))
        perf_dir = layout.performance_dir(scenario)
        perf_dir.mkdir(parents=True)
        for name in (SUMMARY_LOG, DETAIL_LOG):
            shutil.copy2(perf_run / name, perf_dir / name)
        acc_dir = layout.accuracy_dir(scenario)
        acc_dir.mkdir(parents=True)
        for name in (SUMMARY_LOG, DETAIL_LOG):
            shutil.copy2(acc_run / name, acc_dir / name)
        digest = truncate_accuracy_log(acc_run / ACCURACY_LOG, acc_dir / ACCURACY_LOG)
        first = (acc_run / "accuracy.txt").read_text().splitlines()[:1] if (acc_run / "accuracy.txt").is_file() else []
        line = first[0] if first and rules.F1_PATTERN.match(first[0]) else accuracy_line(request.records[scenario]["accuracy"]["accuracy"])
        (acc_dir / "accuracy.txt").write_text(f"{line}\nhash={digest}\n")

        mdir = layout.measurement_dir(scenario)
        mdir.mkdir(parents=True, exist_ok=True)
        _write_json(layout.measurements_json(scenario), _measurements(request, scenario))
        (mdir / "README.md").write_text(_scenario_readme(request, scenario))
        for name in ("user.conf", "mlperf.conf"):
            shutil.copy2(perf_run / name, mdir / name)
        if test01_run is not None:
            write_test01_dir(layout.test01_dir(scenario), test01_run, request.test01[scenario],
                             subset_scores=request.test01_scores.get(scenario))

    rows = result_rows(layout, list(request.scenario_runs), availability=str(request.system_description.get("status")),
                       notes=request.scenario_notes, test01_skipped=request.test01_skipped)
    layout.documentation_dir.mkdir(parents=True)
    for name, text in _documentation(request, rows).items():
        (layout.documentation_dir / name).write_text(text)

    findings = validate_tree(staging, quick=request.quick, layout=layout.name,
                             test01_in_open=not request.test01_skipped)
    blocking = [f for f in findings if f.level == "error" and f.category not in request.allow]
    accepted_errors = [f for f in findings if f.level == "error" and f.category in request.allow]
    validation = ["# Validation", "", "Local validator (mirrors the MLPerf submission checker for bert-99, per "
                  "division; stricter in the places listed below).", "",
                  "```", summarize(findings), "```", ""]
    if accepted_errors:
        validation += ["Errors accepted on the command line (categories: "
                       f"{', '.join(sorted({f.category for f in accepted_errors}))}): this package is NOT a "
                       "compliant submission as it stands.", ""]
    if request.test01_skipped:
        validation += ["TEST01 was skipped with --no-compliance (open division only): the official checker does "
                       "not require it there, but the results were not audited for accuracy in performance mode.", ""]
    validation += [stricter_section(findings)]
    (layout.documentation_dir / "validation.md").write_text("\n".join(validation))

    (staging / INCOMPLETE_MARKER).unlink()  # our own marker: the tree is complete now
    if blocking:
        staging.rename(refused)
        categories = sorted({f.category for f in blocking})
        flags = {"accuracy": "--allow-below-target", "invalid": "--allow-invalid",
                 "noncompliant": "--allow-invalid", "missing": "--allow-missing"}
        (refused / REFUSED_MARKER).write_text("\n".join([
            "# Refused submission package", "",
            f"The validator found {len(blocking)} error(s) in categories {', '.join(categories)}. This tree is "
            f"kept for inspection only; it is not a submission. To package such results anyway, re-run with "
            f"{' '.join(sorted({flags[c] for c in categories}))} (the fact is then recorded in the notes).", "",
            "```", *(str(f) for f in blocking), "```", "",
        ]))
        return PackageResult(refused, False, findings, blocking)
    staging.rename(output)
    return PackageResult(output, True, findings, blocking)
