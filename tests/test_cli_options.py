"""Spellings users of the MLPerf reference run.py, Neural Magic's harness and the MLC automation type
(docs/options-map.md), --audit-conf outside the submission flow, and a run on a given model that leaves torch
and sparseml unimported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT)


@pytest.fixture()
def toy_model_dir(tmp_path):
    write_toy_qa_model(tmp_path / "toy" / "model.onnx")
    return tmp_path / "toy"


def _common(tmp_path, sample_dataset, model_dir) -> list[str]:
    return ["run", "--backend", "onnxruntime", "--model", str(model_dir), "--data-dir",
            str(sample_dataset.dev_json.parent), "--cache-dir", str(tmp_path / "cache"), "--runs-dir",
            str(tmp_path / "runs"), "--no-progress", "--quick", "--count", "16"]


@pytest.mark.parametrize("alias, canonical", [
    (["--accuracy"], ["--mode", "accuracy"]),
    (["--model-path", "m"], ["--model", "m"]),
    (["--model_path", "m"], ["--model", "m"]),
    (["--max_examples", "5"], ["--count", "5"]),
    (["--max-examples", "5"], ["--count", "5"]),
    (["--mlperf_conf", "a.conf"], ["--mlperf-conf", "a.conf"]),
    (["--user_conf", "u.conf"], ["--user-conf", "u.conf"]),
    (["--audit_conf", "TEST01"], ["--audit-conf", "TEST01"]),
    (["--batch_size", "3"], ["--batch-size", "3"]),
    (["--target_qps", "7"], ["--target-qps", "7"]),
])
def test_an_alias_parses_exactly_like_our_spelling(alias, canonical):
    from harness.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", *alias]) == parser.parse_args(["run", *canonical])
    assert parser.parse_args(["run", *alias]) != parser.parse_args(["run"])


def test_the_submission_command_takes_the_engine_aliases_too():
    from harness.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["submission", "--batch_size", "3"]).batch_size == 3


def test_a_test01_audit_run_outside_the_submission_flow(tmp_path, sample_dataset, toy_model_dir):
    """--audit-conf TEST01: the bert TEST01 audit.config the submission flow writes, in effect in LoadGen (the detail
    log's effective settings, a sampled accuracy log in performance mode) and recorded in run.json."""
    from harness.loadgen_logs import read_detail_log
    from harness.submission.rules import TEST01_AUDIT_CONFIG

    proc = _run_cli(*_common(tmp_path, sample_dataset, toy_model_dir), "--audit_conf", "TEST01")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "compliance audit run" in proc.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "audit.config").read_text() == TEST01_AUDIT_CONFIG
    detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    assert detail["effective_accuracy_log_sampling_target"] == 4096
    assert detail["effective_accuracy_log_rng_seed"] == 720381539243781796
    assert detail["errors"] == [], detail["errors"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["mode"] == "performance" and record["settings"]["audit_config"].endswith("audit.config")
    sampled = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    assert sampled, "TEST01 samples responses into the accuracy log of a performance run"


def test_a_plain_run_has_no_audit(tmp_path, sample_dataset, toy_model_dir):
    """Without --audit-conf a stray audit.config in the working directory is never read (the runner names an
    empty one in the run directory), and the accuracy log of a performance run stays empty."""
    from harness.loadgen_logs import read_detail_log
    from harness.submission.compliance import write_audit_config

    stray = tmp_path / "cwd"
    stray.mkdir()
    write_audit_config(stray / "audit.config")
    proc = subprocess.run([sys.executable, "-m", "harness", *_common(tmp_path, sample_dataset, toy_model_dir)],
                          capture_output=True, text=True, timeout=300, cwd=stray,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert read_detail_log(run_dir / "mlperf_log_detail.txt")["effective_accuracy_log_sampling_target"] == 0
    assert json.loads((run_dir / "mlperf_log_accuracy.json").read_text()) == []


@pytest.mark.parametrize("extra, fragments", [
    (["--audit-conf", "TEST01", "--mode", "both"], ("--audit-conf", "performance mode")),
    (["--audit-conf", "TEST01", "--accuracy"], ("--audit-conf", "performance mode")),
    (["--audit-conf", "nowhere/audit.config"], ("--audit-conf", "nowhere/audit.config", "no such file")),
])
def test_audit_conf_mistakes_are_one_clear_error(tmp_path, sample_dataset, toy_model_dir, extra, fragments):
    proc = _run_cli(*_common(tmp_path, sample_dataset, toy_model_dir), *extra)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert all(fragment in error for fragment in fragments), error
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


_HEAVY = ("torch", "sparseml", "compression")


def test_the_cli_and_the_run_path_of_a_given_model_import_neither_torch_nor_sparseml(tmp_path, toy_model_dir):
    """torch and sparseml (~2.4 s, ~270 MB) are the compression pipeline's: a run on a given model needs neither.
    The command line and every module of the run path are imported, and the model resolved, in a fresh process."""
    script = f"""
import sys
from pathlib import Path
import harness.cli, harness.commands, harness.runner, harness.isolated, harness.scenarios, harness.settings
import harness.backends, harness.backends.bucketed, harness.backends.onnxruntime_backend, harness.accuracy
from harness.cli import build_parser
from harness.run_inputs import resolve_run_model
build_parser().parse_args(["run", "--model", {str(toy_model_dir)!r}])
model = resolve_run_model({str(toy_model_dir)!r}, Path("unused-vocab.txt"), Path({str(tmp_path / "cache")!r}))
print("imported:", [name for name in {_HEAVY!r} if name in sys.modules])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "imported: []" in proc.stdout, proc.stdout


def test_a_performance_run_on_a_given_model_imports_neither_torch_nor_sparseml(tmp_path, sample_dataset,
                                                                               toy_model_dir):
    """The whole `run` on a given model, once the feature cache is built (building it tokenizes with transformers,
    which imports torch when it is installed; `prepare` does that once)."""
    args = _common(tmp_path, sample_dataset, toy_model_dir)
    prepare = _run_cli("prepare", "--data-dir", str(sample_dataset.dev_json.parent), "--cache-dir",
                       str(tmp_path / "cache"), "--no-progress")
    assert prepare.returncode == 0, prepare.stderr[-2000:]
    script = f"""
import sys
from harness.cli import main
code = main({args!r})
print("imported:", [name for name in {_HEAVY!r} if name in sys.modules])
sys.exit(code)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "imported: []" in proc.stdout, proc.stdout[-2000:]


def test_a_built_default_model_is_found_without_importing_the_compression_pipeline(tmp_path):
    """`run` without --model on the default model once built: its directory name (the compression pipeline's) is
    remembered per digest of compression's code and recipes, so neither torch nor sparseml is imported. An entry of
    another digest (compression changed since) is not used."""
    models = tmp_path / "models"
    models.mkdir()
    env = {**os.environ, "OBERT_MODELS_DIR": str(models), "OBERT_BENCHMARK_PRESET": "tiny"}
    (models / ".default-model-dirs.json").write_text(json.dumps({"sparse-int8|tiny|0000000000000000": "stale"}))
    compute = """
from pathlib import Path
from compression.benchmark_model import default_model_dir as theirs
from harness.run_inputs import default_model_dir
print(default_model_dir("sparse-int8")); print(theirs("sparse-int8", root=Path(%r), preset="tiny"))
""" % str(models)
    first = subprocess.run([sys.executable, "-c", compute], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                           env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    ours, theirs = first.stdout.split()
    assert ours == theirs and not ours.endswith("stale")
    write_toy_qa_model(Path(ours) / "model.onnx")  # stands for the built model
    find = f"""
import sys
from pathlib import Path
from harness.run_inputs import benchmark_model_dir
print(benchmark_model_dir("sparse-int8", Path("unused-vocab.txt")))
print("imported:", [name for name in {_HEAVY!r} if name in sys.modules])
"""
    second = subprocess.run([sys.executable, "-c", find], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                            env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.splitlines() == [ours, "imported: []"], second.stdout
