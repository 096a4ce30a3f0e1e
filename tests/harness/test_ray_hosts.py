"""Ray beyond one process tree: joining a head is bounded (an unreachable one is one error, Ctrl-C is honoured),
and the README's two-machine commands across two emulated hosts (network, PID, mount and UTS namespaces joined by
a veth pair, one core each; ``benchmarks.scaleout.TwoHostCluster``): the accuracy log is the same as a local
run's, losing the worker host mid-run is survived (DEGRADED), losing the head host ends the run with one error in
bounded time. The namespace tests need root (CI runs as root) and are skipped with the reason elsewhere."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.loadgen_logs import ACCURACY_LOG
from harness.rundir import INCOMPLETE_MARKER, RUN_JSON
from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def toy_model_dir(tmp_path_factory) -> Path:
    model_dir = tmp_path_factory.mktemp("toy")
    write_toy_qa_model(model_dir / "model.onnx")
    return model_dir


def run_args(model_dir: Path, dataset, tmp_path: Path, *extra: str) -> list[str]:
    """An accuracy run of the toy model over the built-in sample (39 windows), one window per batch."""
    return ["-m", "harness", "run", "--backend", "onnxruntime", "--model", str(model_dir), "--data-dir",
            str(dataset.dev_json.parent), "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs"),
            "--no-progress", "--mode", "accuracy", "--batch-size", "1", *extra]


def one_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


def responses(run_dir: Path) -> list[dict]:
    """The accuracy log's responses by sample (LoadGen logs them in the order they completed)."""
    entries = json.loads((run_dir / ACCURACY_LOG).read_text())
    return sorted(({"qsl_idx": e["qsl_idx"], "data": e["data"]} for e in entries), key=lambda e: e["qsl_idx"])


def wait_for_run_dir(runs: Path, proc: subprocess.Popen, timeout_s: float = 180) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        found = list(runs.glob("*/run.json")) if runs.is_dir() else []
        if found:
            return found[0].parent
        time.sleep(0.2)
    raise AssertionError("the run never started")


# ---- joining a head ----------------------------------------------------------------------------------


@pytest.fixture()
def silent_listener():
    """A TCP port that accepts connections and never says a word (not a Ray head); the event is set at the first."""
    server = socket.create_server(("0.0.0.0", 0))
    connected = threading.Event()
    held = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            connected.set()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], connected
    server.close()
    for conn in held:
        conn.close()


def test_an_unreachable_head_is_one_error_naming_the_address(toy_model_dir, sample_dataset, tmp_path):
    """Nothing listens at 127.0.0.1:1: Ray printed its own warnings every 30 s (naming another address) and still
    hung at 420 s."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, *run_args(toy_model_dir, sample_dataset, tmp_path, "--cluster", "ray",
                                                     "--ray-address", "127.0.0.1:1", "--ray-connect-timeout-s", "3")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 1, proc.stderr[-3000:]
    error = one_error(proc.stderr)
    assert error.startswith("error: --ray-address 127.0.0.1:1: no Ray head answers there") and "within 3 s" in error
    assert "connection refused" in error and "--ray-connect-timeout-s" in error
    assert time.monotonic() - started < 60  # the 3 s limit plus start-up, not Ray's 13 minutes of retries
    assert not (tmp_path / "runs").exists()


def test_a_port_that_is_not_a_ray_head_is_one_error_within_the_limit(toy_model_dir, sample_dataset, tmp_path,
                                                                     silent_listener):
    port, _ = silent_listener
    proc = subprocess.run([sys.executable, *run_args(toy_model_dir, sample_dataset, tmp_path, "--cluster", "ray",
                                                     "--ray-address", f"127.0.0.1:{port}", "--ray-connect-timeout-s", "5")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 1, proc.stderr[-3000:]
    error = one_error(proc.stderr)
    assert f"--ray-address 127.0.0.1:{port}: the Ray head at " in error and "could not join its cluster" in error


def test_ctrl_c_while_joining_a_head_is_honoured_at_once(toy_model_dir, sample_dataset, tmp_path, silent_listener):
    """Ctrl-C took 35 s: Ray's C++ connect call holds the main thread."""
    port, connected = silent_listener
    proc = subprocess.Popen([sys.executable, *run_args(toy_model_dir, sample_dataset, tmp_path, "--cluster", "ray",
                                                       "--ray-address", f"127.0.0.1:{port}", "--ray-connect-timeout-s", "300")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert connected.wait(timeout=120), "the harness never tried the head"
        time.sleep(1.0)  # well into the connect: the probe, then Ray's own connection
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted by the user (Ctrl-C)" in stderr and "Traceback" not in stderr


def test_sigterm_while_ray_waits_is_still_reported_as_sigterm():
    """ray.get turns whatever a signal handler raises into a plain KeyboardInterrupt: `timeout` stopping a Ray run
    during its start-up was reported as Ctrl-C with exit status 130 instead of 143."""
    script = """
import os, signal, threading, time
import ray
from harness.interrupts import describe, exit_status, install_sigterm_handler
ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
install_sigterm_handler()  # after ray.init, which puts in its own
@ray.remote
def sleep_long():
    time.sleep(60)
ref = sleep_long.remote()
threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
try:
    ray.get(ref)
except KeyboardInterrupt as exc:
    print(type(exc).__name__, "|", describe(exc), "|", exit_status(exc))
ray.shutdown()
"""
    # a new local Ray instance writes an auth token into ~/.ray (Ray 2.60), which then turns token authentication
    # on for every `ray start --head` on the machine: not from a test
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
                          env=env)
    assert "KeyboardInterrupt | terminated (SIGTERM) | 143" in proc.stdout, proc.stdout + proc.stderr[-3000:]


def test_the_connect_timeout_is_checked():
    from harness.backends.cluster import RayOptions
    from harness.errors import ConfigError

    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="--ray-connect-timeout-s must be a number of seconds > 0"):
            RayOptions(cluster="ray", connect_timeout_s=bad)


# ---- two hosts ---------------------------------------------------------------------------------------


@pytest.fixture()
def two_hosts():
    """A fresh two-host cluster per test (the fault tests kill one of its hosts); torn down whatever happens."""
    from benchmarks.scaleout import HostSetupError, TwoHostCluster

    reason = TwoHostCluster.unavailable()
    if reason:
        pytest.skip(f"two hosts cannot be emulated here: {reason}")
    cluster = TwoHostCluster()
    try:
        try:
            cluster.start()
        except HostSetupError as exc:
            pytest.skip(f"two hosts cannot be emulated here: {exc}")
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def local_run(toy_model_dir, sample_dataset, tmp_path_factory) -> Path:
    """The same accuracy run on local engines: the reference for the runs across hosts."""
    tmp_path = tmp_path_factory.mktemp("local")
    proc = subprocess.run([sys.executable, *run_args(toy_model_dir, sample_dataset, tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_an_accuracy_run_across_two_hosts_answers_as_a_local_run(two_hosts, toy_model_dir, sample_dataset, tmp_path,
                                                                 local_run):
    proc = two_hosts.run(two_hosts.head, [sys.executable, *run_args(
        toy_model_dir, sample_dataset, tmp_path, "--cluster", "ray", "--ray-address", two_hosts.address)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    run_dir = next((tmp_path / "runs").iterdir())
    record = json.loads((run_dir / RUN_JSON).read_text())
    cluster = record["backend"]["cluster"]
    assert cluster["address"] == two_hosts.address and cluster["workers"] == 2
    assert sorted(node["hostname"] for node in cluster["nodes"]) == sorted(host.name for host in two_hosts.hosts)
    assert responses(run_dir) == responses(local_run)  # every response, byte for byte, under its own sample
    assert record["accuracy"] == json.loads((local_run / RUN_JSON).read_text())["accuracy"]
    assert not record["backend"]["degraded"]


@pytest.mark.slow
def test_the_worker_host_lost_mid_run_is_survived_and_the_run_marked_degraded(two_hosts, toy_model_dir, sample_dataset,
                                                                              tmp_path, local_run):
    # a slowed engine (1 s a window, 4 at a time: ~10 s for the 39): the host dies in the middle of the run
    proc = two_hosts.run(two_hosts.head, [sys.executable, *run_args(
        toy_model_dir, sample_dataset, tmp_path, "--cluster", "ray", "--ray-address", two_hosts.address,
        "--inject-delay-ms", "1000")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_dir = wait_for_run_dir(tmp_path / "runs", proc)
        time.sleep(2.0)
        two_hosts.kill_host(two_hosts.worker)  # its raylet, its engine worker, everything on it
        killed = time.monotonic()
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert time.monotonic() - killed < 120
    record = json.loads((run_dir / RUN_JSON).read_text())
    assert record["status"] == "complete" and record["backend"]["degraded"]
    lost = record["backend"]["events"]
    assert len(lost) == 1 and lost[0]["event"] == "worker lost" and lost[0]["hostname"] == two_hosts.worker.name
    assert "DEGRADED (1 Ray worker(s) lost)" in stdout
    assert responses(run_dir) == responses(local_run)  # the lost batches ran again on the head's worker


@pytest.mark.slow
def test_the_head_host_lost_mid_run_ends_the_run_with_one_error_in_bounded_time(two_hosts, toy_model_dir,
                                                                                sample_dataset, tmp_path):
    """The driver on the worker host: without the head, Ray's calls wait for it until Ray's core worker ends the
    whole process, a minute later, with its own message."""
    proc = two_hosts.run(two_hosts.worker, [sys.executable, *run_args(
        toy_model_dir, sample_dataset, tmp_path, "--cluster", "ray", "--ray-address", two_hosts.address,
        "--inject-delay-ms", "2000", "--ray-connect-timeout-s", "5")],  # ~20 s of run: it cannot end first
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_dir = wait_for_run_dir(tmp_path / "runs", proc)
        time.sleep(1.0)
        two_hosts.kill_host(two_hosts.head)
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 3, stderr[-3000:]
    assert time.monotonic() - killed < 60  # 5 s without an answer, then the fault path's grace
    error = one_error(stderr)
    assert f"the Ray head at {two_hosts.address} has not answered for" in error, error
    record = json.loads((run_dir / RUN_JSON).read_text())
    assert record["status"] == "failed" and "RayHeadLost" in record["fault"]["error"]
    assert (run_dir / INCOMPLETE_MARKER).is_file()


def test_the_two_host_bench_section_is_summarised_and_reported():
    from benchmarks.scaleout import TWO_HOSTS_JOB, two_host_report_lines, two_host_summary

    def record(sps: float, **backend) -> dict:
        return {"results": {"samples_per_second": sps}, "backend": {"num_streams": 2, "batch_size": 8, **backend}}

    hosts = [{"name": "h-head", "address": "10.226.0.1", "core": 0}, {"name": "h-worker", "address": "10.226.0.2", "core": 1}]
    job = {"label": TWO_HOSTS_JOB, "samples": 512, "hosts": hosts,
           "run_records": [record(40.0), record(36.0, cluster={"nodes": [{"hostname": "h-head"}, {"hostname": "h-worker"}]},
                                             round_trip_ms={"p50": 400.0}, dispatch_overhead_ms={"p50": 7.0})]}
    summary = two_host_summary(job)
    assert summary["two_hosts_vs_local"] == 0.9 and summary["nodes"] == ["h-head", "h-worker"]
    text = "\n".join(two_host_report_lines(summary))
    assert "| Offline samples/s | 40.0 | 36.0 | 0.9 |" in text and "h-worker (10.226.0.2, core 1)" in text
    skipped = two_host_summary({"label": TWO_HOSTS_JOB, "skipped": "two hosts cannot be emulated here: not root"})
    assert "Not measured: two hosts cannot be emulated here: not root." in two_host_report_lines(skipped)
    assert two_host_summary(None) is None and two_host_report_lines(None) == []
