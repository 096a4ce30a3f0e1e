"""Submission packaging: tree layout and files per scenario, system JSON, TEST01 verification on real runs
(and on tampered responses), the validator's refusals. Runs use the toy ONNX model on the built-in sample
dataset, paced so that throughput and latency are steady enough for TEST01's 10% performance check."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from harness.data import write_sample_dataset
from harness.errors import ConfigError
from harness.loadgen_logs import ACCURACY_LOG, DETAIL_LOG
from harness.models import inspect_onnx_model
from harness.settings import LoadGenOverrides
from harness.squad import FeatureParams, load_or_build_features
from harness.submission import rules
from harness.submission.compliance import (
    read_log_entries,
    squad_subset_scorer,
    verify_accuracy,
    verify_performance,
)
from harness.submission.package import truncate_accuracy_log
from harness.run_options import EngineSettings
from harness.submission.runs import RunContext, candidate_run_dirs, select_runs
from harness.submission.system import build_system_description, load_template, system_description_problems
from harness.submission.validate import validate_tree
from harness.submission.workflow import make_submission
from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model

SCENARIOS = ("Offline", "SingleStream")
EVERYTHING = frozenset({"accuracy", "invalid", "noncompliant"})  # --allow-below-target --allow-invalid


class PacedBackend:
    """Delegates to the toy backend after sleeping a fixed time per sample: the toy model is so fast that
    Python overheads would dominate its timings, and TEST01 compares two runs' timings."""

    def __init__(self, inner, ms_per_sample: float) -> None:
        self.inner = inner
        self.ms_per_sample = ms_per_sample

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def predict(self, input_ids, attention_mask, token_type_ids):
        time.sleep(self.ms_per_sample * input_ids.shape[0] / 1000)
        return self.inner.predict(input_ids, attention_mask, token_type_ids)

    def describe(self) -> dict:
        return self.inner.describe()


class Paced:
    """Picklable backend wrapper (runs execute in child processes)."""

    def __init__(self, ms_per_sample: float) -> None:
        self.ms_per_sample = ms_per_sample

    def __call__(self, backend):
        return PacedBackend(backend, self.ms_per_sample)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> RunContext:
    root = tmp_path_factory.mktemp("submission")
    dataset = write_sample_dataset(root / "data")
    features = load_or_build_features(dataset.dev_json, dataset.vocab, FeatureParams(), root / "cache", progress=False)
    model = inspect_onnx_model(write_toy_qa_model(root / "toy" / "model.onnx"))
    overrides = {
        "Offline": LoadGenOverrides(min_duration_ms=200, min_query_count=len(features), target_qps=500),
        "SingleStream": LoadGenOverrides(min_duration_ms=300, min_query_count=64, expected_latency_ms=3),
    }
    return RunContext(
        model=model, features=features, dataset=dataset, engine=EngineSettings(backend="onnxruntime", batch_size=4),
        mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", runs_root=root / "runs",
        quick=True, overrides=overrides, progress=False, backend_wrapper=Paced(3), feature_cache_dir=root / "cache",
    )


@pytest.fixture(scope="module")
def package(ctx, tmp_path_factory):
    """One full package (six runs), accepted with the override flags since the toy model's F1 is ~0."""
    out = tmp_path_factory.mktemp("out") / "tree"
    result = make_submission(ctx, output=out, submitter="TestOrg", allow=EVERYTHING,
                             command_line="python -m harness submission --quick (test)")
    return result


def _org(result) -> Path:
    return result.path / "open" / "TestOrg"


def _scenario_dir(result, scenario: str) -> Path:
    systems = list((_org(result) / "results").iterdir())
    assert len(systems) == 1
    return systems[0] / "bert-99" / scenario


def _files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def test_package_has_the_checker_layout_for_each_scenario(package):
    assert package.accepted and package.path.is_dir()
    assert not [f for f in package.findings if f.category == "missing"], package.findings
    assert sorted(p.name for p in package.path.iterdir()) == ["open"]  # no marker left at the root
    org = _org(package)
    assert sorted(p.name for p in org.iterdir()) == ["documentation", "results", "src", "systems"]
    for scenario in SCENARIOS:
        assert _files_under(_scenario_dir(package, scenario)) == {
            "README.md", "measurements.json", "user.conf", "mlperf.conf",
            "performance/run_1/mlperf_log_summary.txt", "performance/run_1/mlperf_log_detail.txt",
            "accuracy/mlperf_log_summary.txt", "accuracy/mlperf_log_detail.txt", "accuracy/accuracy.txt",
            "accuracy/mlperf_log_accuracy.json",
            "TEST01/verify_accuracy.txt", "TEST01/verify_performance.txt",
            "TEST01/performance/run_1/mlperf_log_summary.txt", "TEST01/performance/run_1/mlperf_log_detail.txt",
            "TEST01/accuracy/mlperf_log_accuracy.json", "TEST01/accuracy/accuracy.txt",
        }
        sdir = _scenario_dir(package, scenario)
        lines = (sdir / "accuracy" / "accuracy.txt").read_text().splitlines()
        assert rules.F1_PATTERN.match(lines[0]) and rules.HASH_PATTERN.match(lines[1])
        assert (sdir / "accuracy" / ACCURACY_LOG).stat().st_size <= rules.MAX_ACCURACY_LOG_SIZE
        measurements = json.loads((sdir / "measurements.json").read_text())
        assert all(measurements[k] for k in rules.MEASUREMENTS_FIELDS)
        readme = (sdir / "README.md").read_text()
        assert f"python -m harness run --scenario {scenario} --mode performance" in readme
        assert "python -m harness submission" in readme
        assert "TEST PASS" in (sdir / "TEST01" / "verify_accuracy.txt").read_text()
    assert (org / "src" / "bert-99" / "README.md").read_text().count("commit") >= 1
    docs = org / "documentation"
    assert {p.name for p in docs.iterdir()} == {"README.md", "results.md", "results.csv", "calibration.md",
                                                 "validation.md"}
    rows = (docs / "results.csv").read_text().splitlines()
    assert rows[0].startswith("Submitter,Division") and len(rows) == 1 + len(SCENARIOS)
    assert "NOT MET" in (docs / "results.md").read_text() and "VALID" in (docs / "results.md").read_text()
    # the accepted accuracy failure is recorded as such
    notes = json.loads((_scenario_dir(package, "Offline") / "measurements.json").read_text())["notes"]
    assert "below the bert-99 target" in notes and "--allow-below-target" in notes


def test_system_json_has_every_required_field(package):
    system_json = next((_org(package) / "systems").glob("*.json"))
    description = json.loads(system_json.read_text())
    assert system_json.stem == _scenario_dir(package, "Offline").parts[-3]
    assert set(rules.SYSTEM_REQUIRED_FIELDS) <= set(description)
    assert system_description_problems(description, division="open", submitter="TestOrg") == []
    assert description["division"] == "open" and description["submitter"] == "TestOrg"
    assert description["framework"].startswith("ONNX Runtime ")
    assert description["accelerators_per_node"] == "0"
    assert int(description["host_processor_core_count"]) >= 1
    assert "is_network" not in description
    assert "NOT COMPLIANT" in description["sw_notes"]


def test_system_description_template_wins_and_typos_are_refused(tmp_path):
    template_path = tmp_path / "t.json"
    template_path.write_text(json.dumps({"_c": "comment", "submitter": "Org", "cooling": "liquid",
                                         "host_storage_type": "NVMe SSD", "host_processor_model_name": None}))
    description = build_system_description(load_template(template_path), division="closed", submitter=None,
                                           backend="deepsparse")
    assert description["cooling"] == "liquid" and description["host_storage_type"] == "NVMe SSD"
    assert description["host_processor_model_name"]  # null in the template: detected
    assert description["framework"].startswith("DeepSparse")
    assert description["division"] == "closed" and description["submitter"] == "Org"
    template_path.write_text(json.dumps({"submiter": "typo"}))
    with pytest.raises(ConfigError, match="unknown field.*submiter"):
        load_template(template_path)
    template_path.write_text(json.dumps({"status": "available"}))
    with pytest.raises(ConfigError, match="no submitter"):
        build_system_description(load_template(template_path), division="open", submitter=None, backend="onnxruntime")
    assert load_template(None)  # the shipped template is valid


def test_test01_accuracy_passes_on_real_runs_and_fails_on_tampered_responses(package, ctx, tmp_path):
    for scenario in SCENARIOS:
        runs = _runs(ctx)[scenario]
        result = verify_accuracy(runs["accuracy"] / ACCURACY_LOG, runs["TEST01"] / ACCURACY_LOG)
        assert result.identical and result.passed and result.num_perf_log_qsl_idx_match > 0
        assert "TEST PASS" in result.report().splitlines()

    runs = _runs(ctx)["Offline"]
    scorer = squad_subset_scorer(ctx.features, ctx.dataset.dev_json)
    fake = tmp_path / ACCURACY_LOG
    # one response altered where it cannot change an answer ([CLS] logits): not bit-identical, so the
    # deterministic check fails; the rules' fallback then compares the subset's accuracy, which is unchanged
    entries = json.loads((runs["TEST01"] / ACCURACY_LOG).read_text())
    tampered = bytearray(bytes.fromhex(entries[0]["data"]))
    tampered[:8] = b"\x00\x00\x80\x7f" * 2  # +inf logits at position 0
    entries[0]["data"] = tampered.hex().upper()
    fake.write_text(json.dumps(entries))
    result = verify_accuracy(runs["accuracy"] / ACCURACY_LOG, fake, scorer=scorer)
    assert not result.identical and result.num_perf_log_data_mismatch == 1
    assert result.baseline is not None and result.compliance is not None  # the fallback was evaluated
    report = result.report()
    assert "TEST FAIL" in report and "TEST PASS" not in report
    assert result.fallback_passed == (result.delta_percent <= rules.TEST01_ACCURACY_DELTA_PERCENT)
    # responses swapped between samples (made-up answers): not identical and the subset accuracy moves
    entries = json.loads((runs["TEST01"] / ACCURACY_LOG).read_text())
    rotated = [e["data"] for e in entries[1:] + entries[:1]]
    for entry, data in zip(entries, rotated):
        entry["data"] = data
    fake.write_text(json.dumps(entries))
    result = verify_accuracy(runs["accuracy"] / ACCURACY_LOG, fake, scorer=scorer)
    assert result.num_perf_log_data_mismatch == len(entries) and not result.passed
    assert "OUT OF TOLERANCE" in result.report()
    # a sampled response for a sample the accuracy run never answered also fails
    entries = json.loads((runs["TEST01"] / ACCURACY_LOG).read_text())
    entries[0]["qsl_idx"] = 10**6
    fake.write_text(json.dumps(entries))
    assert verify_accuracy(runs["accuracy"] / ACCURACY_LOG, fake).num_missing_qsl_idxs == 1


def test_test01_performance_verification(package, ctx, tmp_path):
    perf = _runs(ctx)["Offline"]["performance"] / DETAIL_LOG
    assert verify_performance(perf, perf).passed
    assert "TEST PASS" in verify_performance(perf, perf).report()
    text = perf.read_text()
    score = float(re.search(r'"key": "result_samples_per_second", "value": ([\d.e+]+)', text).group(1))
    slower = tmp_path / "slower.txt"
    slower.write_text(re.sub(r'("key": "result_samples_per_second", "value": )[\d.e+]+', rf"\g<1>{score * 0.8}", text))
    result = verify_performance(perf, slower)
    assert not result.passed and result.failure == "Test score invalid"
    invalid = tmp_path / "invalid.txt"
    invalid.write_text(text.replace('"result_validity", "value": "VALID"', '"result_validity", "value": "INVALID"'))
    assert "Invalid results" in verify_performance(perf, invalid).failure
    single = _runs(ctx)["SingleStream"]["performance"] / DETAIL_LOG
    assert verify_performance(perf, single).failure == "Test and reference scenarios do not match!"


def _runs(ctx) -> dict[str, dict[str, Path]]:
    selected, _ = select_runs(ctx, list(SCENARIOS), candidate_run_dirs([ctx.runs_root]))
    return {s: r.runs for s, r in selected.items()}


def test_runs_are_reused_and_the_v5_layout_is_available(package, ctx, tmp_path):
    before = sorted(p.name for p in ctx.runs_root.iterdir())
    result = make_submission(ctx, output=tmp_path / "v5", submitter="TestOrg", layout="v5", allow=EVERYTHING,
                             from_runs=[ctx.runs_root])
    assert sorted(p.name for p in ctx.runs_root.iterdir()) == before  # nothing was run again
    assert result.accepted and not [f for f in result.findings if f.category == "missing"], result.findings
    org = result.path / "open" / "TestOrg"
    assert sorted(p.name for p in org.iterdir()) == ["code", "compliance", "documentation", "measurements",
                                                     "results", "systems"]
    system = next((org / "results").iterdir()).name
    mdir = org / "measurements" / system / "bert-99" / "Offline"
    assert {p.name for p in mdir.iterdir()} == {"README.md", "user.conf", "mlperf.conf",
                                                f"{system}_onnxruntime-toy_Offline.json"}
    assert (org / "compliance" / system / "bert-99" / "SingleStream" / "TEST01" / "verify_performance.txt").is_file()
    assert (org / "code" / "bert-99" / "onnxruntime-toy" / "README.md").is_file()


def test_runs_made_with_other_settings_are_not_reused(package, ctx):
    other = RunContext(**{**ctx.__dict__, "engine": EngineSettings(backend="onnxruntime", batch_size=2)})
    selected, skipped = select_runs(other, list(SCENARIOS), candidate_run_dirs([ctx.runs_root]))
    assert all(not r.runs for r in selected.values())
    assert any("other engine settings" in line for line in skipped)


def test_validator_refuses_below_target_accuracy_unless_allowed(package, ctx, tmp_path):
    result = make_submission(ctx, output=tmp_path / "strict", submitter="TestOrg", from_runs=[ctx.runs_root],
                             allow=frozenset({"invalid", "noncompliant"}))
    assert not result.accepted
    assert result.path.name == "strict.REFUSED" and not (tmp_path / "strict").exists()
    assert {f.category for f in result.blocking} == {"accuracy"}
    assert "--allow-below-target" in (result.path / "REFUSED.md").read_text()
    with pytest.raises(ConfigError, match="already exists"):  # nothing is overwritten
        make_submission(ctx, output=tmp_path / "strict", submitter="TestOrg", from_runs=[ctx.runs_root])


def test_validator_reports_missing_files_invalid_runs_and_noncompliance(package, tmp_path):
    tree = tmp_path / "copy"
    shutil.copytree(package.path, tree)
    sdir = next((tree / "open" / "TestOrg" / "results").iterdir()) / "bert-99"
    (sdir / "Offline" / "user.conf").unlink()
    (sdir / "SingleStream" / "TEST01" / "verify_performance.txt").unlink()
    detail = sdir / "Offline" / "performance" / "run_1" / DETAIL_LOG
    detail.write_text(detail.read_text().replace('"result_validity", "value": "VALID"',
                                                 '"result_validity", "value": "INVALID"'))
    findings = validate_tree(tree, quick=False)
    errors = {(f.category, Path(f.path).name) for f in findings if f.level == "error"}
    assert ("missing", "user.conf") in errors
    assert ("missing", "verify_performance.txt") in errors
    assert ("invalid", DETAIL_LOG) in errors
    assert ("accuracy", "accuracy.txt") in errors
    assert ("noncompliant", DETAIL_LOG) in errors  # 200 ms runs on 39 samples, without --quick
    assert any("min_duration" in f.message for f in findings)
    # with --quick the same non-compliance is expected: reported as a warning, not an error
    quick = validate_tree(tree, quick=True)
    assert not [f for f in quick if f.category == "noncompliant" and f.level == "error"]


def test_accuracy_log_truncation_keeps_head_tail_and_hash(tmp_path):
    source = tmp_path / "full.json"
    source.write_text("[\n" + ",\n".join(json.dumps({"seq_id": i, "qsl_idx": i, "data": "AB" * 3072})
                                          for i in range(50)) + "\n]\n")
    dest = tmp_path / "truncated.json"
    digest = truncate_accuracy_log(source, dest)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    text, full = dest.read_text(), source.read_text()
    assert len(dest.read_bytes()) <= rules.MAX_ACCURACY_LOG_SIZE
    assert text.startswith(full[:4096]) and text.endswith(full[-4096:]) and "\n\n...\n\n" in text
    small = tmp_path / "small.json"
    small.write_text("[\n]\n")
    truncate_accuracy_log(small, tmp_path / "small_copy.json")
    assert (tmp_path / "small_copy.json").read_text() == "[\n]\n"


def test_cli_validate_only(package, capsys):
    from harness.cli import main

    assert main(["submission", "--validate", str(package.path), "--quick"]) == 4  # accuracy below target
    out = capsys.readouterr().out
    assert "[accuracy]" in out and "error(s)" in out


def test_test01_sampled_log_is_parsed(package, ctx):
    entries = read_log_entries(_runs(ctx)["SingleStream"]["TEST01"] / ACCURACY_LOG)
    assert entries and all(len(data) == 2 * 384 * 2 * 4 for _, data in entries)
