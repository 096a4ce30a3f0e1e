"""Scenarios under real LoadGen on the built-in sample: every sample answered, logs and run.json written,
and a failing backend ends the run (non-zero, marked incomplete) instead of hanging it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.backends import BackendOptions
from harness.backends.fault import FaultInjectingBackend
from harness.errors import BackendFault
from harness.loadgen_logs import ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG
from harness.models import inspect_onnx_model
from harness.rundir import INCOMPLETE_MARKER, RUN_JSON
from harness.runner import RunRequest, execute_run
from harness.scenarios import SutOptions
from harness.settings import LoadGenOverrides
from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model


@pytest.fixture(scope="module")
def sample(sample_features):
    return sample_features[:2]


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    path = write_toy_qa_model(tmp_path_factory.mktemp("toy") / "model.onnx")
    return inspect_onnx_model(path)


def make_request(sample, model, tmp_path, **changes) -> RunRequest:
    dataset, features = sample
    fields = dict(
        scenario="Offline", mode="performance", backend="onnxruntime", model=model, features=features,
        dataset=dataset, backend_options=BackendOptions(batch_size=4), sut_options=SutOptions(num_workers=2),
        mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", runs_root=tmp_path / "runs",
        overrides=LoadGenOverrides(min_duration_ms=300, min_query_count=len(features), target_qps=500),
        progress=False,
    )
    fields.update(changes)
    return RunRequest(**fields)


@pytest.mark.parametrize("backend", ["onnxruntime", "deepsparse"])
def test_offline_performance_answers_every_sample(sample, toy_model, tmp_path, backend):
    record = execute_run(make_request(sample, toy_model, tmp_path, backend=backend))
    run_dir = tmp_path / "runs" / next(p.name for p in (tmp_path / "runs").iterdir())
    assert record["status"] == "complete"
    assert not (run_dir / INCOMPLETE_MARKER).exists()
    for name in (SUMMARY_LOG, DETAIL_LOG, RUN_JSON, "mlperf.conf", "user.conf"):
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / RUN_JSON).read_text())
    assert saved["results"]["samples_per_second"] > 0
    assert saved["qsl"]["features"] == len(sample[1])
    assert "NOT comparable" in " ".join(saved["notes"])  # the sample dataset is flagged
    assert "not a compliant MLPerf run" in " ".join(saved["notes"])  # overrides are flagged
    assert "Result is" in (run_dir / SUMMARY_LOG).read_text()
    assert record["summary"].startswith(f"[COMPLETE] {backend} Offline performance")


def test_offline_accuracy_logs_every_feature_once(sample, toy_model, tmp_path):
    record = execute_run(make_request(sample, toy_model, tmp_path, mode="accuracy"))
    run_dir = tmp_path / "runs" / next(p.name for p in (tmp_path / "runs").iterdir())
    entries = json.loads((run_dir / ACCURACY_LOG).read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(len(sample[1])))
    assert all(len(e["data"]) == 2 * 384 * 2 * 4 for e in entries)  # hex of float32 [384, 2]
    accuracy_txt = (run_dir / "accuracy.txt").read_text()
    assert accuracy_txt.startswith('{"exact_match": ') and '"f1": ' in accuracy_txt
    assert (run_dir / "predictions.json").is_file()
    assert 0 <= record["accuracy"]["f1"] <= 100


def test_server_dynamic_batching_completes(sample, toy_model, tmp_path):
    request = make_request(
        sample, toy_model, tmp_path, scenario="Server",
        overrides=LoadGenOverrides(min_duration_ms=1500, min_query_count=60, target_qps=80),
    )
    record = execute_run(request)
    results = record["results"]
    assert record["status"] == "complete"
    assert results["target_latency_ms"] == 130.0
    assert results["latency_ms"]["p99"] is not None and results["latency_ms"]["p99"] < 130
    assert results["query_count"] >= 60
    assert record["batches_run"] <= results["query_count"]


def test_single_stream_completes(sample, toy_model, tmp_path):
    request = make_request(
        sample, toy_model, tmp_path, scenario="SingleStream", backend_options=BackendOptions(batch_size=1),
        overrides=LoadGenOverrides(min_duration_ms=300, min_query_count=50, expected_latency_ms=2),
    )
    record = execute_run(request)
    assert record["status"] == "complete"
    assert record["results"]["latency_ms"]["p90"] > 0
    assert record["results"]["query_count"] >= 50


def test_offline_backend_fault_stops_run_and_marks_it(sample, toy_model, tmp_path):
    request = make_request(sample, toy_model, tmp_path,
                           backend_wrapper=lambda backend: FaultInjectingBackend(backend, fail_after=3))
    started = time.monotonic()
    with pytest.raises(BackendFault, match="injected fault"):
        execute_run(request)
    assert time.monotonic() - started < 30
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / INCOMPLETE_MARKER).is_file()
    saved = json.loads((run_dir / RUN_JSON).read_text())
    assert saved["status"] == "failed" and "InjectedFault" in saved["fault"]["error"]
    assert (run_dir / DETAIL_LOG).is_file()  # LoadGen's logs are kept


def test_server_backend_fault_exits_nonzero_instead_of_hanging(sample, tmp_path):
    """Server keeps issuing until its minimum duration (here 60 s): the watchdog must end the process."""
    dataset, _ = sample
    model_dir = tmp_path / "toy"
    write_toy_qa_model(model_dir / "model.onnx")
    cmd = [
        sys.executable, "-m", "harness", "run", "--scenario", "Server", "--backend", "onnxruntime",
        "--model", str(model_dir), "--data-dir", str(dataset.dev_json.parent), "--cache-dir", str(tmp_path / "c"),
        "--runs-dir", str(tmp_path / "runs"), "--min-duration-ms", "60000", "--target-qps", "40",
        "--inject-fault-after", "5", "--fault-grace-s", "2", "--no-progress",
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert time.monotonic() - started < 50
    assert proc.returncode == 3, proc.stderr[-2000:]
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / INCOMPLETE_MARKER).is_file()
    saved = json.loads((run_dir / RUN_JSON).read_text())
    assert saved["status"] == "failed"
    assert "grace period" in saved["fault"]["note"]


def test_run_directories_are_never_reused(sample, toy_model, tmp_path):
    first = execute_run(make_request(sample, toy_model, tmp_path))
    second = execute_run(make_request(sample, toy_model, tmp_path))
    assert first["run_dir"] != second["run_dir"]
    assert len(list((tmp_path / "runs").iterdir())) == 2
