"""The command line reports bad input as one clear line (exit 1, no traceback) and leaves no run behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model


def run_cli(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def assert_one_clear_error(proc: subprocess.CompletedProcess, *fragments: str, status: int = 1) -> None:
    assert proc.returncode == status, proc.stderr[-2000:]
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


# ---- a fresh machine -------------------------------------------------------------------------------


def test_fresh_machine_runs_the_main_job_without_a_data_dir(tmp_path):
    """The README's main job on a fresh machine, offline, with no data dir: the default model is built
    into an empty models dir (tiny geometry, same code path), then performance and accuracy run on the
    built-in sample with the loud not-comparable notice, on a quiet console."""
    env = {k: v for k, v in os.environ.items() if k != "OBERT_DATA_DIR"}
    env.update(OBERT_OFFLINE="1", OBERT_MODELS_DIR=str(tmp_path / "models"), OBERT_BENCHMARK_PRESET="tiny")
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--scenario", "Offline", "--mode", "both", "--quick",
         "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs"), "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("[COMPLETE]")]
    assert len(summaries) == 2 and "performance" in summaries[0] and "F1 " in summaries[1]
    assert all("SAMPLE DATA" in line and "UNTRAINED" in line for line in summaries)
    assert "NOT COMPARABLE TO MLPERF" in proc.stderr and "OBERT_OFFLINE is set" in proc.stderr
    # quiet by default: no library progress logs, no engine notices
    # --no-progress: no bars of the model build either; no warning of the tokenizers library about forks. The one
    # line --backend auto (the default) prints names the CPU class, VNNI or not.
    engine_lines = [line for line in proc.stderr.splitlines() if line.startswith("engine: ")]
    assert len(engine_lines) == 1 and "chosen by --backend auto" in engine_lines[0]
    rest = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("engine: "))
    for noise in ("Transformed", "VNNI", "verify onnx_checker", "pkg_resources", " INFO ", "build sparse-int8",
                  "QAT calibration", "huggingface/tokenizers"):
        assert noise not in rest, noise
    model_dir = next(path for path in (tmp_path / "models").iterdir() if path.is_dir())  # beside: the name memo
    assert json.loads((model_dir / "manifest.json").read_text())["tokenizer"] is None  # built from the sample
    assert not (model_dir / "vocab.txt").exists()
    for run_dir in (tmp_path / "runs").iterdir():
        record = json.loads((run_dir / "run.json").read_text())
        assert record["dataset"]["kind"] == "sample" and record["loadgen"]["errors"] == []


def test_named_data_dir_without_the_files_is_an_error(tmp_path, toy_model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(*common(tmp_path, empty, toy_model_dir))
    assert_one_clear_error(proc, f"--data-dir {empty} holds no dev-v1.1.json and no vocab.txt")
    assert not (tmp_path / "runs").exists()


# ---- bad input that used to be accepted ----------------------------------------------------------


def _data_dir_with_vocab(tmp_path, dev_files, vocab_lines) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "dev-v1.1.json").write_bytes(dev_files.dev_json.read_bytes())
    (data / "vocab.txt").write_text("".join(vocab_lines), encoding="utf-8")
    return data


@pytest.mark.parametrize("damage, fragments", [
    ("shifted", ("30533 entries", "30522 rows")),
    ("duplicates", ("line 30523 repeats the token",)),
])
def test_a_vocab_that_does_not_fit_the_model_is_refused_before_anything_runs(tmp_path, dev_files, damage, fragments):
    lines = dev_files.vocab.read_text(encoding="utf-8").splitlines(keepends=True)
    lines = lines[:1] + [f"[inserted{i}]\n" for i in range(11)] + lines[1:] if damage == "shifted" else lines + lines[:11]
    data = _data_dir_with_vocab(tmp_path, dev_files, lines)
    model = tmp_path / "model"
    write_toy_qa_model(model / "model.onnx", embedding_rows=30522)
    proc = run_cli(*common(tmp_path, data, model), "--count", "16")
    assert_one_clear_error(proc, *fragments)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_cut_vocab_is_run_as_unofficial_and_says_so(tmp_path, dev_files, toy_model_dir):
    lines = dev_files.vocab.read_text(encoding="utf-8").splitlines(keepends=True)[:20000]
    data = _data_dir_with_vocab(tmp_path, dev_files, lines)
    proc = run_cli(*common(tmp_path, data, toy_model_dir), "--count", "16", "--mode", "accuracy")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "UNOFFICIAL DATA" in proc.stdout and "not the bert-base-uncased vocab" in proc.stderr
    record = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
    assert record["dataset"]["kind"] == "unofficial" and record["dataset"]["official"] is False


@pytest.mark.parametrize("flag", ["--batch-size", "--workers"])
def test_zero_batch_size_or_workers_is_an_error(tmp_path, sample_dataset, toy_model_dir, flag):
    proc = run_cli(*common(tmp_path, sample_dataset.dev_json.parent, toy_model_dir), flag, "0")
    assert_one_clear_error(proc, flag, ">= 1, got 0")


def test_a_count_beyond_the_dataset_is_said(tmp_path, sample_dataset, toy_model_dir):
    proc = run_cli(*common(tmp_path, sample_dataset.dev_json.parent, toy_model_dir)[:-1], "--count", "999999",
                   "--min-duration-ms", "100", "--min-query-count", "39")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--count 999999 cut to all the dataset has" in proc.stdout
    record = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
    assert record["qsl"]["requested_count"] == 999999 and record["qsl"]["features"] == 39
    assert any("--count 999999 asks for more features" in note for note in record["notes"])


@pytest.mark.parametrize("line, fragments", [
    ("bert.Offline.target_qpz = 10", ("user.conf:2", "target_qpz", "unknown LoadGen setting", "'target_qps'")),
    ("bert.Offline.target_qps = ten", ("user.conf:2", "target_qps", "'ten' is not a number")),
    ("bert.Offline.target_qps = 1e400", ("user.conf:2", "target_qps", "'1e400' is not a finite number")),
    ("bert.Offline.target_qps=10", ("user.conf:2", "spaces around '='")),
    ("bert.Offline.target_qps = 10 # a comment", ("user.conf:2", "put comments on their own line")),
    ("bert.Offlne.target_qps = 10", ("user.conf:2", "unknown scenario 'Offlne'")),
    ("*.Offline.qsl_rng_seed = 1", ("user.conf:2", "taken only from the official mlperf.conf")),
])
def test_user_conf_mistakes_name_file_line_and_key(tmp_path, sample_dataset, toy_model_dir, line, fragments):
    conf = tmp_path / "user.conf"
    conf.write_text(f"# my targets\n{line}\n")
    proc = run_cli(*common(tmp_path, sample_dataset.dev_json.parent, toy_model_dir), "--user-conf", str(conf))
    assert_one_clear_error(proc, *fragments)
    assert not (tmp_path / "runs").exists()


def test_a_test_far_longer_than_its_options_suggest_is_announced_at_the_start(tmp_path, sample_dataset, toy_model_dir):
    """--count 64 --min-duration-ms 2000 without --quick issued 10,833 samples (mlperf.conf's Offline
    min_query_count), 20 minutes on ONNX Runtime, with nothing said."""
    proc = run_cli(*common(tmp_path, sample_dataset.dev_json.parent, toy_model_dir)[:-1], "--count", "16",
                   "--min-duration-ms", "100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LoadGen will issue 10,833 samples over the 16 features (Offline min_query_count from mlperf.conf" in proc.stderr
    assert "the minimum duration alone asks for 4)" in proc.stderr  # 1.1 x 0.1 s x user.conf's 42 QPS
    record = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
    assert record["samples_completed"] == record["settings"]["loadgen_plan"]["samples"] == 10833
    quiet = run_cli(*common(tmp_path / "q", sample_dataset.dev_json.parent, toy_model_dir), "--count", "16")
    assert quiet.returncode == 0 and "LoadGen will issue" not in quiet.stderr  # --quick: as many as asked


# ---- where the runs go -----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["a file", "inside a file"])
def test_a_runs_dir_that_cannot_hold_runs_is_refused_before_the_model_loads(tmp_path, sample_dataset, layout):
    """It was a FileExistsError / NotADirectoryError traceback from rundir.py after the start-up (~8 s)."""
    (tmp_path / "taken").write_text("a file\n")
    runs = tmp_path / "taken" if layout == "a file" else tmp_path / "taken" / "runs"
    # a model that does not exist: the runs directory is checked first
    proc = run_cli(*common(tmp_path, sample_dataset.dev_json.parent, tmp_path / "no-model"), "--runs-dir", str(runs))
    expected = "is a file, not a directory" if layout == "a file" else f"is inside {tmp_path / 'taken'}, which is a file"
    assert_one_clear_error(proc, f"--runs-dir {runs}: {expected}")


def test_submission_checks_its_runs_dir_before_the_data_loads(tmp_path):
    (tmp_path / "taken").write_text("a file\n")
    proc = subprocess.run([sys.executable, "-m", "submission", "--division", "open", "--scenarios", "Offline",
                           "--no-compliance", "--runs-dir", str(tmp_path / "taken"), "--data-dir",
                           str(tmp_path / "no-data"), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert_one_clear_error(proc, f"--runs-dir {tmp_path / 'taken'}: is a file, not a directory")


def test_a_full_device_is_one_clear_error_with_its_own_exit_status(tmp_path, sample_dataset, toy_model_dir,
                                                                   small_tmpfs):
    """A 40 KB --runs-dir gave a traceback (OSError: [Errno 28] No space left on device) from write_json_atomic,
    a .run.json.tmp left behind and run.json stuck at "running"."""
    runs = small_tmpfs(40) / "runs"
    proc = run_cli(*common(tmp_path, sample_dataset.dev_json.parent, toy_model_dir), "--runs-dir", str(runs))
    assert_one_clear_error(proc, f"--runs-dir {runs}: no space left on device", status=6)
    assert not runs.exists() or not any(runs.iterdir())


# ---- re-scoring an accuracy log --------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored_runs(tmp_path_factory, sample_dataset):
    """A performance run and an accuracy run of the toy model on the sample."""
    root = tmp_path_factory.mktemp("scored")
    write_toy_qa_model(root / "toy" / "model.onnx")
    proc = run_cli(*common(root, sample_dataset.dev_json.parent, root / "toy"), "--mode", "both")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted((root / "runs").iterdir())
    return root, {json.loads((d / "run.json").read_text())["mode"]: d for d in runs}


def _accuracy_cli(root, run_dir, sample_dataset, *extra):
    return run_cli("accuracy", str(run_dir), "--data-dir", str(sample_dataset.dev_json.parent),
                   "--cache-dir", str(root / "cache"), *extra)


def test_rescoring_refuses_a_performance_run(scored_runs, sample_dataset):
    root, runs = scored_runs
    proc = _accuracy_cli(root, runs["performance"], sample_dataset)
    assert_one_clear_error(proc, "a performance-mode run")
    assert not (runs["performance"] / "accuracy.txt").exists()


def test_rescoring_never_overwrites_and_refuses_incomplete_logs(scored_runs, sample_dataset, tmp_path):
    root, runs = scored_runs
    run_dir = tmp_path / "copy"
    shutil.copytree(runs["accuracy"], run_dir)
    before = (run_dir / "accuracy.txt").read_bytes()
    proc = _accuracy_cli(root, run_dir, sample_dataset)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "accuracy.txt").read_bytes() == before
    rescored = [d for d in run_dir.iterdir() if d.name.startswith("rescored-")]
    assert len(rescored) == 1 and json.loads((rescored[0] / "accuracy.txt").read_text()) == json.loads(before)

    log = run_dir / "mlperf_log_accuracy.json"
    entries = json.loads(log.read_text())
    log.write_text(json.dumps(entries[: len(entries) // 2]))
    proc = _accuracy_cli(root, run_dir, sample_dataset)
    assert_one_clear_error(proc, "responses with logits for only", "--partial")
    proc = _accuracy_cli(root, run_dir, sample_dataset, "--partial")
    assert proc.returncode == 0 and "partial log" in proc.stderr
    log.write_text("[]")
    assert_one_clear_error(_accuracy_cli(root, run_dir, sample_dataset), "holds no responses")


def test_two_rescorings_in_the_same_second_get_a_directory_each(scored_runs, sample_dataset, tmp_path, monkeypatch):
    """Both wrote into one rescored-<time>/, one score overwriting the other."""
    import time

    from harness.cli import build_parser
    from harness.commands import cmd_accuracy

    root, runs = scored_runs
    run_dir = tmp_path / "copy"
    shutil.copytree(runs["accuracy"], run_dir)
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20261201-120000")  # the same second, every time
    args = build_parser().parse_args(["accuracy", str(run_dir), "--data-dir", str(sample_dataset.dev_json.parent),
                                      "--cache-dir", str(root / "cache"), "--no-progress"])
    assert cmd_accuracy(args) == 0 and cmd_accuracy(args) == 0
    rescored = sorted(d.name for d in run_dir.iterdir() if d.name.startswith("rescored-"))
    assert rescored == ["rescored-20261201-120000", "rescored-20261201-120000-2"]
    assert all((run_dir / name / "accuracy.txt").is_file() for name in rescored)


def test_a_partial_score_is_never_written_as_accuracy_txt(scored_runs, sample_dataset, tmp_path):
    """accuracy.txt is what a submission packages: a --partial score written there (official format, no
    marker) could pass for a full result."""
    root, runs = scored_runs
    run_dir = tmp_path / "copy"
    shutil.copytree(runs["accuracy"], run_dir)
    for name in ("accuracy.txt", "predictions.json"):  # the new score then goes into the run directory itself
        (run_dir / name).unlink()
    log = run_dir / "mlperf_log_accuracy.json"
    entries = json.loads(log.read_text())
    log.write_text(json.dumps(entries[: len(entries) // 2]))
    proc = _accuracy_cli(root, run_dir, sample_dataset, "--partial")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (run_dir / "accuracy.txt").exists() and not (run_dir / "predictions.json").exists()
    score = json.loads((run_dir / "accuracy-partial.txt").read_text())
    assert score["partial"] is True and 0 < score["questions_scored"]
    assert (run_dir / "predictions-partial.json").is_file() and "written as accuracy-partial.txt" in proc.stderr


def test_the_engine_is_imported_before_the_scoring_warm_up_thread_starts(tmp_path, sample_dataset, toy_model_dir):
    """Two threads importing one package tree at once can be handed a partially initialized module: deepsparse
    and transformers (the scoring warm-up thread) both import requests, and a harness job of the real-accuracy
    experiment died of it ("cannot import name '_basic_auth_str' from partially initialized module
    'requests.auth'"). The engine must be imported when that thread starts."""
    args = ["run", "--backend", "deepsparse", "--model", str(toy_model_dir), "--data-dir",
            str(sample_dataset.dev_json.parent), "--cache-dir", str(tmp_path / "cache"), "--runs-dir",
            str(tmp_path / "runs"), "--no-progress", "--quick", "--count", "16", "--mode", "accuracy"]
    script = f"""
import sys, threading
seen = []
original_start = threading.Thread.start
def start(self):
    if self.name == "warm-up-scoring":
        seen.append("deepsparse" in sys.modules)
    original_start(self)
threading.Thread.start = start
from harness.cli import main
code = main({args!r})
print("warm-up started with the engine imported:", seen)
sys.exit(code)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warm-up started with the engine imported: [True]" in proc.stdout, proc.stdout[-2000:]
