"""Scenarios under real LoadGen on the built-in sample: every sample answered, logs and run.json written,
and a failing backend ends the run (non-zero, marked incomplete) instead of hanging it."""

from __future__ import annotations

import errno
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.backends import BackendOptions
from harness.backends.fault import FaultInjectingBackend
from harness.errors import BackendFault, ConfigError
from harness.loadgen_logs import ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG
from harness.models import inspect_onnx_model
from harness.rundir import INCOMPLETE_MARKER, RUN_JSON
from harness.run_record import offered_load_note
from harness.runner import RunRequest, execute_run
from harness.scenarios import SutOptions
from harness.loadgen_settings import LoadGenOverrides
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


def test_slack_policy_runs_a_long_window_before_an_earlier_short_one_with_more_slack():
    import collections

    from harness.scenarios import least_slack

    # bucket 0 (128 tokens, ~17 ms) got a window at t=0, bucket 3 (384 tokens, ~60 ms) one at t=10 ms.
    queues = [collections.deque([(0.000, "short")]), collections.deque(), collections.deque(),
              collections.deque([(0.010, "long")])]
    expected = [0.017, 0.022, 0.034, 0.060]
    slack, bucket = least_slack(queues, expected, bound_s=0.130, now=0.020)
    # the long one must start within 60 ms to finish by 140 ms; the short one has until 113 ms
    assert bucket == 3 and slack == pytest.approx(0.010 + 0.130 - 0.020 - 0.060)
    # before any batch was timed (no expectations yet) it is plain earliest-deadline-first
    assert least_slack(queues, [0.0] * 4, bound_s=0.130, now=0.020)[1] == 0
    with pytest.raises(ValueError):
        least_slack([collections.deque()], [0.0], 0.130, 0.0)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_server_slack_policy_completes_within_the_bound(sample, toy_model, tmp_path, batch_size):
    request = make_request(
        sample, toy_model, tmp_path, scenario="Server",
        backend_options=BackendOptions(batch_size=batch_size, sequence_buckets=(96, 160, 384)),
        sut_options=SutOptions(num_workers=2, server_policy="slack"),
        overrides=LoadGenOverrides(min_duration_ms=1500, min_query_count=60, target_qps=80),
    )
    record = execute_run(request)
    assert record["status"] == "complete" and record["settings"]["sut_options"]["server_policy"] == "slack"
    results = record["results"]
    assert results["query_count"] >= 60 and results["latency_ms"]["p99"] < 130


def test_unknown_server_policy_is_refused():
    with pytest.raises(ConfigError, match="--server-policy must be one of aging, slack"):
        SutOptions(server_policy="fifo")


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


@pytest.mark.parametrize("scenario, overrides, setting", [
    ("Offline", LoadGenOverrides(min_duration_ms=300, min_query_count=1, target_qps=500), "bert.Offline.target_qps = "),
    ("SingleStream", LoadGenOverrides(min_duration_ms=300, min_query_count=1, expected_latency_ms=2),
     "bert.SingleStream.target_latency = "),
])
def test_a_run_that_outran_the_load_it_was_told_to_expect_says_what_to_set(sample, toy_model, tmp_path, scenario,
                                                                           overrides, setting):
    """user.conf's targets are one slow machine's: on a faster one LoadGen ends the run early, INVALID, and its
    advice names no value. The run says which setting and the value it measured."""
    record = execute_run(make_request(sample, toy_model, tmp_path, scenario=scenario, overrides=overrides,
                                      backend_options=BackendOptions(batch_size=1)))
    assert record["results"]["validity"] == "INVALID" and record["results"]["min_duration_met"] is False
    [note] = [note for note in record["notes"] if setting in note]
    measured = (record["results"]["samples_per_second"] if scenario == "Offline"
                else record["results"]["latency_ms"]["p50"] / 2)
    value = float(note.split(setting)[1].split()[0])
    assert value == pytest.approx(measured, rel=0.01, abs=0.6)
    # a run that lasted its minimum duration gets no such note, whatever its throughput
    assert offered_load_note(scenario, {**record["results"], "min_duration_met": True}) is None


@pytest.mark.parametrize("min_duration_ms, min_query_count", [(300, 10), (50, 100)], ids=["duration", "query-count"])
def test_the_issue_plan_is_what_loadgen_issues(sample, toy_model, tmp_path, min_duration_ms, min_query_count):
    """The start-up note about a long test relies on knowing LoadGen's sample count in advance."""
    overrides = LoadGenOverrides(min_duration_ms=min_duration_ms, min_query_count=min_query_count, target_qps=500)
    record = execute_run(make_request(sample, toy_model, tmp_path, overrides=overrides))
    plan = record["settings"]["loadgen_plan"]
    assert plan["samples"] == record["samples_completed"]  # the SUT answered exactly that many
    assert plan["samples"] == (165 if min_duration_ms == 300 else 100)  # 1.1 x 0.3 s x 500 QPS; min_query_count


# ---- a full device ---------------------------------------------------------------------------------


def _fill(directory: Path) -> None:
    """Take every free block of the device holding ``directory``."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(64 * 1024))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


class _FillsDeviceOnFirstRunBatch(FaultInjectingBackend):
    """Fills the device at the first batch LoadGen sends (the warm-up batch comes before the run directory)."""

    def __init__(self, inner, device: Path) -> None:
        super().__init__(inner, fail_after=1 << 62)
        self.device = device

    def predict(self, input_ids, attention_mask, token_type_ids):
        with self._lock:
            self._calls += 1
            if self._calls == 2:
                _fill(self.device)
        return self.inner.predict(input_ids, attention_mask, token_type_ids)


def test_a_device_that_fills_up_mid_run_is_one_error_and_the_run_is_marked_failed(sample, toy_model, tmp_path,
                                                                                  small_tmpfs):
    """LoadGen ignores write errors: its accuracy log was cut short and the harness blamed an interruption
    ("not valid JSON ...; was the run interrupted?"); the next run.json write was a traceback leaving a
    .run.json.tmp behind and run.json at "running"."""
    from functools import partial

    from harness.errors import DiskFull

    device = small_tmpfs(2048)
    request = make_request(sample, toy_model, tmp_path, mode="accuracy", runs_root=device / "runs",
                           backend_wrapper=partial(_FillsDeviceOnFirstRunBatch, device=device))
    with pytest.raises(DiskFull) as raised:
        execute_run(request)
    run_dir = next((device / "runs").iterdir())
    message = str(raised.value)
    assert message.startswith(f"{run_dir / ACCURACY_LOG}: no space left on device: LoadGen's {ACCURACY_LOG}")
    assert f"the run is marked failed in {run_dir / RUN_JSON}" in message and raised.value.exit_status == 6
    saved = json.loads((run_dir / RUN_JSON).read_text())
    assert saved["status"] == "failed" and saved["fault"]["kind"] == "disk full"
    assert "no space left on device" in (run_dir / INCOMPLETE_MARKER).read_text()
    left = {p.name for p in run_dir.iterdir()}
    assert not [name for name in left if name.endswith(".tmp") or "reserve" in name]
    assert {ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG, "mlperf.conf", "user.conf"} <= left  # nothing deleted


def test_only_a_loadgen_run_holds_a_space_reserve_and_it_is_gone_when_the_run_ends(sample, toy_model, tmp_path):
    from harness.rundir import RESERVE_FILE, create_run_dir

    record = execute_run(make_request(sample, toy_model, tmp_path))
    assert not (Path(record["run_dir"]) / RESERVE_FILE).exists()
    suite_dir = create_run_dir(tmp_path / "bench", "bench", "suite", setting="--out-dir")  # the benchmark suite's
    assert not (suite_dir / RESERVE_FILE).exists()


def test_a_failed_write_names_its_file_and_leaves_no_temporary_file(small_tmpfs):
    from harness.rundir import write_atomic

    device = small_tmpfs(64)
    (device / "run.json").write_text("{}")
    _fill(device)
    with pytest.raises(OSError) as raised:
        write_atomic(device / "run.json", "x" * 10000)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(device / "run.json")
    assert sorted(p.name for p in device.iterdir()) == ["filler", "run.json"]
    assert (device / "run.json").read_text() == "{}"  # the old content stays whole


# ---- interruption, overload, a busy machine --------------------------------------------------------


def _server_cli(sample, tmp_path, *extra: str) -> list[str]:
    dataset, _ = sample
    model_dir = tmp_path / "toy"
    write_toy_qa_model(model_dir / "model.onnx")
    return [sys.executable, "-m", "harness", "run", "--scenario", "Server", "--backend", "onnxruntime",
            "--model", str(model_dir), "--data-dir", str(dataset.dev_json.parent), "--cache-dir", str(tmp_path / "c"),
            "--runs-dir", str(tmp_path / "runs"), "--no-progress", *extra]


def _wait_for_running_run(runs: Path, proc: subprocess.Popen, timeout_s: float = 60) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        records = list(runs.glob("*/run.json")) if runs.is_dir() else []
        if records:
            time.sleep(2.0)  # LoadGen is issuing by now
            return records[0].parent
        time.sleep(0.2)
    raise AssertionError("the run never started")


@pytest.mark.parametrize("sig, status, reason", [
    (signal.SIGINT, 130, "interrupted by the user (Ctrl-C)"),
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
])
def test_ctrl_c_and_sigterm_end_a_run_cleanly(sample, tmp_path, sig, status, reason):
    # As from a terminal: a test suite started in the background inherits SIGINT ignored, and Python keeps
    # an ignored SIGINT ignored (the Unix convention for background jobs), so restore the default first.
    proc = subprocess.Popen(_server_cli(sample, tmp_path, "--min-duration-ms", "120000", "--target-qps", "20"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run_dir = _wait_for_running_run(tmp_path / "runs", proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr[-2000:]
    assert "terminate called" not in stderr and "Traceback" not in stderr
    assert reason in stderr
    saved = json.loads((run_dir / RUN_JSON).read_text())
    assert saved["status"] == "interrupted" and saved["interrupted"] == reason
    assert reason in (run_dir / INCOMPLETE_MARKER).read_text()


def _start_cli_with_a_slow_compile(sample, tmp_path, extra: list[str], uninterruptible: bool):
    """``harness run`` with DeepSparse's engine build replaced by a minute-long wait. ``uninterruptible``: the
    wait ignores Ctrl-C as a compile in C code does when the main thread runs it (Python raises
    KeyboardInterrupt only once the C call returns)."""
    dataset, _ = sample
    model_dir = tmp_path / "toy"
    write_toy_qa_model(model_dir / "model.onnx")
    args = ["run", "--backend", "deepsparse", "--model", str(model_dir), "--data-dir", str(dataset.dev_json.parent),
            "--cache-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--quick",
            *extra]
    script = f"""
import sys, threading, time
from harness.backends import deepsparse_backend
def compile_for_a_minute(self, model, options):  # stands in for compiling the 14-layer model
    where = "the main thread" if threading.current_thread() is threading.main_thread() else "a worker thread"
    print("compiling in " + where, file=sys.stderr, flush=True)
    end, interrupted = time.monotonic() + 60, None
    while time.monotonic() < end:
        try:
            time.sleep(max(0.0, end - time.monotonic()))
        except KeyboardInterrupt as exc:
            if not {uninterruptible!r}:
                raise
            interrupted = exc
    if interrupted is not None:
        raise interrupted
deepsparse_backend.DeepSparseBackend.__init__ = compile_for_a_minute
from harness.cli import main
sys.exit(main({args!r}))
"""
    # As from a terminal: restore the default SIGINT a background test run inherits ignored.
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()

    def wait_for(fragment: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if fragment in lines.get(timeout=0.5):
                    return
            except queue.Empty:
                pass
        raise AssertionError(f"no {fragment!r} on stderr within {timeout_s} s")

    return proc, wait_for


def test_ctrl_c_during_a_compile_that_cannot_be_cut_short_says_so_at_once_and_a_second_quits(sample, tmp_path):
    """A compile in C code kept Ctrl-C waiting ~40 s without a word. Now it is said at once, and a second
    Ctrl-C quits without waiting for the compile."""
    proc, wait_for = _start_cli_with_a_slow_compile(sample, tmp_path, ["--no-bucketing"], uninterruptible=True)
    try:
        wait_for("compiling in the main thread", 120)
        proc.send_signal(signal.SIGINT)
        wait_for("Ctrl-C: stopping", 20)  # the compile still has most of its minute to go
        assert proc.poll() is None, "the stand-in compile ignores the first Ctrl-C: the process must still wait"
        proc.send_signal(signal.SIGINT)
        wait_for("Ctrl-C again: quitting now", 10)
        assert proc.wait(timeout=20) == 130
    finally:
        proc.kill()
        proc.wait()


def test_ctrl_c_while_the_bucket_engines_compile_ends_the_run_at_once(sample, tmp_path):
    """The bucket engines compile in a thread pool, which cannot cancel a running compile: the first Ctrl-C
    leaves the pool behind and ends the command (exit 130) without waiting for the compiles or a second Ctrl-C."""
    proc, wait_for = _start_cli_with_a_slow_compile(sample, tmp_path, [], uninterruptible=False)
    try:
        wait_for("compiling in a worker thread", 120)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert time.monotonic() - sent < 30  # the compiles had ~60 s to go
        wait_for("interrupted by the user (Ctrl-C)", 5)  # said last (the stopping notice may lose the race to exit)
    finally:
        proc.kill()
        proc.wait()


def test_an_overloaded_server_run_says_when_it_cannot_be_valid(sample, tmp_path):
    """Offered far more than the engine serves: the run says early that the bound is lost, shows its queue
    draining, and finishes."""
    # a small minimum query count: user.conf's Server minimum (3,600) would serve for over a minute here; one window
    # per 20 ms call (the aging policy at batch 1: the tokens policy would batch its way out of the overload)
    proc = subprocess.run(_server_cli(sample, tmp_path, "--min-duration-ms", "2000", "--target-qps", "100",
                                      "--min-query-count", "200", "--inject-delay-ms", "20", "--server-policy", "aging"),
                          capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the latency bound was lost" in proc.stderr and "--abort-when-invalid" in proc.stderr
    saved = json.loads(next((tmp_path / "runs").iterdir()).joinpath(RUN_JSON).read_text())
    assert saved["results"]["validity"] == "INVALID" and saved["latency_watch"]["lost_after_s"] is not None


def test_abort_when_invalid_stops_a_lost_server_run(sample, tmp_path):
    started = time.monotonic()
    proc = subprocess.run(_server_cli(sample, tmp_path, "--min-duration-ms", "120000", "--target-qps", "100",
                                      "--inject-delay-ms", "20", "--abort-when-invalid", "--fault-grace-s", "2",
                                      "--server-policy", "aging"),
                          capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)
    assert time.monotonic() - started < 60  # not the 120 s minimum duration
    assert proc.returncode == 5, proc.stderr[-2000:]
    run_dir = next((tmp_path / "runs").iterdir())
    saved = json.loads((run_dir / RUN_JSON).read_text())
    assert saved["status"] == "stopped" and saved["results"]["validity"] == "INVALID"
    assert "latency bound was lost" in saved["results"]["invalid_reason"]
    assert "INVALID: the latency bound was lost" in proc.stdout
    assert (run_dir / INCOMPLETE_MARKER).is_file()


def test_competing_commands_are_recognised():
    from harness.machine_load import is_competing_command

    assert is_competing_command(["/venv/bin/python", "-m", "harness", "run", "--quick"])
    assert is_competing_command(["python3", "-m", "harness.isolated", "spec.json", "out.json"])
    assert is_competing_command(["/venv/bin/obert-compress", "prune"])
    assert is_competing_command(["python", "-m", "benchmarks", "--sections", "engines"])
    assert is_competing_command(["python", "-m", "submission", "--quick"])
    assert is_competing_command(["python", "-m", "experiments", "real-accuracy"])
    assert not is_competing_command(["python", "-m", "http.server"])
    assert not is_competing_command(["bash", "-c", "harness"])


def test_only_competing_commands_that_compute_count():
    from harness.machine_load import active_commands

    before = {1: ("python -m harness run", 10.0), 2: ("python -m compression experiment", 50.0)}
    after = {1: ("python -m harness run", 11.0), 2: ("python -m compression experiment", 50.0),
             3: ("python -m benchmarks", 0.5)}
    # 1 used a core for 1 s of 2 s; 2 is paused (a SIGSTOPped experiment); 3 started in between (no baseline).
    assert active_commands(before, after, wall_s=2.0) == ["1: python -m harness run"]
    assert active_commands(before, after, wall_s=0.0) == []


def test_helper_processes_of_the_run_are_not_counted_as_other_load():
    from harness.machine_load import LoadMonitor

    # a busy process standing in for a Ray actor of the run's own pool
    burner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        plain, with_helper = LoadMonitor(interval_s=0.5), LoadMonitor(interval_s=0.5, helper_pids=[burner.pid])
        plain.start(), with_helper.start()
        time.sleep(2.0)
        plain_report, helper_report = plain.stop(), with_helper.stop()
    finally:
        burner.kill()
        burner.wait()
    assert plain_report.other_cores_mean > 0.6  # the burner is someone else's load ...
    assert helper_report.other_cores_mean < plain_report.other_cores_mean - 0.5  # ... unless it works for the run


def test_a_run_beside_another_busy_run_records_that_the_machine_was_not_idle(sample, toy_model, tmp_path):
    # A busy loop whose command line looks like another harness run.
    burner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 60\nwhile time.time() < end: pass",
                               "-m", "harness", "run"])
    try:
        time.sleep(0.5)
        record = execute_run(make_request(sample, toy_model, tmp_path,
                                          overrides=LoadGenOverrides(min_duration_ms=3000, target_qps=500)))
    finally:
        burner.kill()
        burner.wait()
    load = record["machine_load"]
    assert load["warning"] and "not idle" in load["warning"]
    assert any(str(burner.pid) in command for command in load["competing_commands"])
    assert load["other_cores_mean"] > 0.3
    assert any("not idle" in note for note in record["notes"]) and "MACHINE NOT IDLE" in record["summary"]
