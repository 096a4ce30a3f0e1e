"""The command line reports bad input as one clear line (exit 1, no traceback) and leaves no run behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model


def run_cli(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def assert_one_clear_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture()
def toy_model_dir(tmp_path):
    write_toy_qa_model(tmp_path / "toy" / "model.onnx")
    return tmp_path / "toy"


def common(tmp_path, data_dir, model_dir) -> list[str]:
    return ["run", "--backend", "onnxruntime", "--model", str(model_dir), "--data-dir", str(data_dir),
            "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--quick"]


@pytest.mark.parametrize(
    "content, fragments",
    [
        (None, ("dev-v1.1.json",)),  # missing dataset file next to a vocab
        ("{not json", ("dev-v1.1.json", "JSON")),
        (json.dumps({"version": "1.1", "articles": []}), ("dev-v1.1.json", "data")),
    ],
    ids=["missing", "not-json", "wrong-schema"],
)
def test_bad_dataset_file_gives_one_clear_error(tmp_path, toy_model_dir, dev_files, content, fragments):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "vocab.txt").write_bytes(dev_files.vocab.read_bytes())
    if content is not None:
        (data_dir / "dev-v1.1.json").write_text(content)
    proc = run_cli(*common(tmp_path, data_dir, toy_model_dir))
    assert_one_clear_error(proc, *fragments)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_model_gives_one_clear_error(tmp_path, sample_dataset):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_text("not a model")
    proc = run_cli(*common(tmp_path, sample_dataset.dev_json.parent, bad))
    assert_one_clear_error(proc, "model.onnx", "not a readable ONNX model")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_data_dir_setting_names_it(tmp_path, toy_model_dir):
    proc = run_cli(*common(tmp_path, tmp_path / "nowhere", toy_model_dir))
    assert_one_clear_error(proc, "--data-dir", "nowhere")


def test_quick_run_both_modes_prints_summaries_and_no_loadgen_errors(tmp_path, toy_model_dir, sample_dataset):
    """`--mode both` runs each LoadGen test in its own process, so neither log carries LoadGen's
    'Multiple conf files are used' error."""
    proc = run_cli(*common(tmp_path, sample_dataset.dev_json.parent, toy_model_dir), "--mode", "both")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [l for l in proc.stdout.splitlines() if l.startswith("[COMPLETE]")]
    assert len(summaries) == 2 and "performance" in summaries[0] and "accuracy" in summaries[1]
    assert "SAMPLE DATA" in summaries[0]
    for run_dir in (tmp_path / "runs").iterdir():
        record = json.loads((run_dir / "run.json").read_text())
        assert record["loadgen"]["errors"] == [], record["loadgen"]["errors"]
