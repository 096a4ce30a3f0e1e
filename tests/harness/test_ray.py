"""Scale-out on Ray: a local multi-node cluster on loopback (a head without CPUs and worker nodes of one CPU
each), one LoadGen driver, engines in Ray actors. One cluster per module; fault tests add their own nodes."""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from harness.backends.cluster import RayOptions
from harness.backends.openvino_backend import OpenVinoOptions
from harness.backends import BackendOptions, create_backend, create_local_backend
from harness.backends.fault import SlowBackend
from harness.errors import BackendFault
from harness.loadgen_logs import ACCURACY_LOG
from harness.models import inspect_onnx_model
from harness.rundir import INCOMPLETE_MARKER, RUN_JSON
from harness.runner import RunRequest, execute_run
from harness.scenarios import SutOptions
from harness.loadgen_settings import LoadGenOverrides
from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import write_toy_qa_model

ray = pytest.importorskip("ray")

NODE_ARGS = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    from benchmarks.scaleout import loopback_cluster

    from harness.backends.cluster import keeping_sigterm_handler

    cluster = loopback_cluster(2, cpus_per_node=NODE_ARGS["num_cpus"], object_store_mb=80)
    with keeping_sigterm_handler():
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def fresh_worker_nodes(cluster, count: int = 2) -> list:
    """Replace every worker node by ``count`` new ones (fault tests kill theirs)."""
    for node in list(cluster.worker_nodes):
        cluster.remove_node(node)
    nodes = [cluster.add_node(**NODE_ARGS) for _ in range(count)]
    cluster.wait_for_nodes()
    deadline = time.monotonic() + 30
    while sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")) != count:
        assert time.monotonic() < deadline, "the new Ray nodes did not register"
        time.sleep(0.2)
    return nodes


@pytest.fixture(scope="module")
def sample(sample_features):
    return sample_features[:2]


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    return inspect_onnx_model(write_toy_qa_model(tmp_path_factory.mktemp("toy") / "model.onnx"))


def request(sample, model, tmp_path, **changes) -> RunRequest:
    dataset, features = sample
    fields = dict(
        scenario="Offline", mode="accuracy", backend="onnxruntime", model=model, features=features, dataset=dataset,
        backend_options=BackendOptions(batch_size=4, sequence_buckets=(128, 192, 384)),
        sut_options=SutOptions(num_workers=None), mlperf_conf=REPO_ROOT / "mlperf.conf",
        user_conf=REPO_ROOT / "user.conf", runs_root=tmp_path / "runs",
        overrides=LoadGenOverrides(min_duration_ms=300, min_query_count=len(features), target_qps=500), progress=False,
    )
    fields.update(changes)
    return RunRequest(**fields)


def ray_options(options: BackendOptions, **changes) -> BackendOptions:
    return replace(options, ray=RayOptions(cluster="ray", **changes))


def local_backend(engine: str = "onnxruntime"):
    return partial(create_local_backend, engine)


def run_with(backend, req: RunRequest) -> dict:
    try:
        return execute_run(req, backend=backend)
    finally:
        backend.close()


def accuracy_log(record: dict) -> list[dict]:
    """The accuracy log's responses by qsl_idx (LoadGen's order of completion is not part of the result)."""
    entries = json.loads((Path(record["run_dir"]) / ACCURACY_LOG).read_text())
    return sorted(({"qsl_idx": e["qsl_idx"], "data": e["data"]} for e in entries), key=lambda e: e["qsl_idx"])


@pytest.fixture(scope="module")
def local_accuracy(sample, toy_model, tmp_path_factory):
    req = request(sample, toy_model, tmp_path_factory.mktemp("local"))
    return run_with(create_backend("onnxruntime", toy_model, req.backend_options), req)


def test_offline_accuracy_over_ray_is_byte_identical_to_local_even_out_of_order(cluster, sample, toy_model,
                                                                                 local_accuracy, tmp_path):
    """Two workers, one of them slow: batches finish in another order than they were sent, and every
    response must still reach LoadGen under its own sample (the reference Ray SUT's ordering bug)."""
    req = request(sample, toy_model, tmp_path)
    from harness.backends.ray_pool import RayPoolBackend

    pool = RayPoolBackend("onnxruntime", local_backend(), toy_model, ray_options(req.backend_options),
                          worker_wrappers=[partial(SlowBackend, delay_s=0.05)])
    sent, finished, lock = [], [], threading.Lock()
    original = pool.predict

    def tracking_predict(ids, mask, types):
        with lock:
            sent.append(len(sent))
            mine = sent[-1]
        result = original(ids, mask, types)
        with lock:
            finished.append(mine)
        return result

    pool.predict = tracking_predict
    parallelism = pool.parallelism  # 2 workers x (1 stream + 1 batch waiting)
    # the actors on this (loopback) host count as the run's own CPU, not as a busy machine
    helpers = pool.helper_process_ids()
    assert {actor.info["pid"] for actor in pool.actors} <= set(helpers)
    record = run_with(pool, req)
    assert finished != sorted(finished)  # batches did complete out of order
    assert accuracy_log(record) == accuracy_log(local_accuracy)
    assert record["accuracy"] == local_accuracy["accuracy"]
    cluster_info = record["backend"]["cluster"]
    assert cluster_info["number_of_nodes"] == 2 and cluster_info["workers"] == 2
    assert cluster_info["cpus_per_worker"] == [1] and cluster_info["ray_version"] == ray.__version__
    assert record["backend"]["round_trip_ms"]["calls"] == record["batches_run"] + record["warmup_batches"]
    assert record["settings"]["sut_options"]["num_workers"] == parallelism == 4
    assert not record["backend"]["degraded"]


def _model_copies() -> set[Path]:
    from harness.backends.ray_pool import MODEL_DIR_PREFIX

    return set(Path(tempfile.gettempdir()).glob(MODEL_DIR_PREFIX + "*"))


def test_server_over_ray(cluster, sample, toy_model, tmp_path):
    before = _model_copies()
    req = request(sample, toy_model, tmp_path, scenario="Server", mode="performance",
                  backend_options=BackendOptions(batch_size=1, sequence_buckets=(128, 384)),
                  overrides=LoadGenOverrides(min_duration_ms=1500, min_query_count=30, target_qps=40))
    record = run_with(create_backend("onnxruntime", toy_model, ray_options(req.backend_options)), req)
    assert record["status"] == "complete" and record["results"]["query_count"] >= 30
    assert record["backend"]["dispatch_overhead_ms"]["p50"] >= 0  # the Ray round trip is measured
    # each worker's copy of the model is gone once its engine is built (killed actors clean up nothing)
    assert _model_copies() - before == set()


def test_a_batch_sent_ahead_waits_for_the_stream_instead_of_sharing_it(cluster, sample, toy_model, tmp_path):
    """Each actor holds one batch per stream plus one waiting; the waiting one must not compute beside the
    other (two calls on one stream's cores oversubscribe them: Server batches took several times longer)."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.backends.ray_pool import RayPoolBackend

    delay_s = 0.3
    options = ray_options(request(sample, toy_model, tmp_path).backend_options, workers=1)
    pool = RayPoolBackend("onnxruntime", local_backend(), toy_model, options, worker_wrappers=[partial(SlowBackend, delay_s=delay_s)])
    try:
        assert pool.parallelism == 2  # one stream + one waiting
        features = sample[1]
        ids, mask, types = (a[:1].astype("int64") for a in (features.input_ids, features.input_mask,
                                                            features.segment_ids))
        with ThreadPoolExecutor(2) as threads:
            list(threads.map(lambda _: pool.predict(ids, mask, types), range(2)))
        info = pool.describe()
        assert info["queued_in_worker_ms"]["p99"] >= 0.8 * 1000 * delay_s  # the second waited for the first
        # the second's round trip is two service times; p99 of two calls interpolates a little below the larger
        assert info["round_trip_ms"]["p99"] >= 1.8 * 1000 * delay_s
        assert info["dispatch_overhead_ms"]["p99"] < 1000 * delay_s  # the wait is not counted as Ray overhead
    finally:
        pool.close()


@pytest.mark.parametrize("engine", ["deepsparse", "openvino"])
def test_engines_in_ray_workers(cluster, sample, toy_model, tmp_path, local_accuracy, engine):
    req = request(sample, toy_model, tmp_path, backend=engine)
    options = ray_options(replace(req.backend_options, engine=OpenVinoOptions(precision="f32")))  # OpenVINO: the toy model's float math
    record = run_with(create_backend(engine, toy_model, options), req)
    cores = record["backend"]["num_cores" if engine == "deepsparse" else "inference_num_threads"]
    assert record["backend"]["engine"] == engine and cores == 1  # each one-CPU worker's engine on its own CPU
    assert record["accuracy"]["f1"] == pytest.approx(local_accuracy["accuracy"]["f1"])


def _kill_later(cluster, nodes, after_s: float) -> threading.Thread:
    def kill():
        time.sleep(after_s)
        for node in nodes:
            cluster.remove_node(node)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_worker_lost_mid_run_is_survived_and_the_run_marked_degraded(cluster, sample, toy_model, tmp_path,
                                                                       local_accuracy):
    nodes = fresh_worker_nodes(cluster)
    req = request(sample, toy_model, tmp_path)
    from harness.backends.ray_pool import RayPoolBackend

    slow = [partial(SlowBackend, delay_s=0.3)] * 2  # a few seconds of work, so the kill lands mid-run
    pool = RayPoolBackend("onnxruntime", local_backend(), toy_model, ray_options(req.backend_options), worker_wrappers=slow)
    killer = _kill_later(cluster, nodes[:1], after_s=1.0)
    record = run_with(pool, req)
    killer.join()
    assert record["status"] == "complete"
    assert accuracy_log(record) == accuracy_log(local_accuracy)  # every query answered, re-runs identical
    assert record["backend"]["degraded"] and record["backend"]["events"][0]["event"] == "worker lost"
    assert "DEGRADED" in record["summary"] and any(n.startswith("DEGRADED") for n in record["notes"])


def test_all_workers_lost_ends_with_the_fault_path_without_hanging(cluster, sample, toy_model, tmp_path):
    nodes = fresh_worker_nodes(cluster)
    req = request(sample, toy_model, tmp_path, mode="performance")
    from harness.backends.ray_pool import RayPoolBackend

    pool = RayPoolBackend("onnxruntime", local_backend(), toy_model, ray_options(req.backend_options),
                          worker_wrappers=[partial(SlowBackend, delay_s=0.3)] * 2)
    killer = _kill_later(cluster, nodes, after_s=1.0)
    started = time.monotonic()
    with pytest.raises(BackendFault, match="every Ray worker of the pool is lost"):
        run_with(pool, req)
    killer.join()
    assert time.monotonic() - started < 60
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / INCOMPLETE_MARKER).is_file()
    assert json.loads((run_dir / RUN_JSON).read_text())["status"] == "failed"
    fresh_worker_nodes(cluster)  # leave two nodes for whatever runs next


def test_joining_ray_keeps_the_harness_sigterm_handler(cluster, sample, toy_model, tmp_path):
    """ray.init (and a head node started in this process) install a SIGTERM handler that exits at once; the
    harness's own, which ends a run cleanly as interrupted with exit 143, must stay in place."""
    from harness.backends.ray_pool import RayPoolBackend

    ray.shutdown()  # so that the pool joins the cluster itself
    before = signal.getsignal(signal.SIGTERM)

    def harness_handler(signum, frame):  # noqa: ARG001 - signal handler signature
        raise AssertionError("not called")

    signal.signal(signal.SIGTERM, harness_handler)
    try:
        options = ray_options(request(sample, toy_model, tmp_path).backend_options, address=cluster.address)
        RayPoolBackend("onnxruntime", local_backend(), toy_model, options).close()
        assert signal.getsignal(signal.SIGTERM) is harness_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_ray_options_are_checked():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="--cluster 'k8s'"):
        RayOptions(cluster="k8s")
    with pytest.raises(ConfigError, match="--ray-workers must be >= 1"):
        RayOptions(cluster="ray", workers=0)


@pytest.mark.parametrize("changes", [{"cpus_per_worker": 2}, {"workers": 4}])
def test_actors_no_node_can_hold_are_refused_instead_of_waited_for(cluster, sample, toy_model, tmp_path, changes):
    """Ray never places an actor that asks for more CPUs than its node has, and gives no bound on the wait: the
    pool refuses such a layout at once (the worker nodes have one CPU each)."""
    from harness.backends.ray_pool import RayPoolBackend
    from harness.errors import ConfigError

    fresh_worker_nodes(cluster)
    req = request(sample, toy_model, tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"has 1 CPU\(s\), but --ray-workers .* Ray would wait for them forever"):
        RayPoolBackend("onnxruntime", local_backend(), toy_model, ray_options(req.backend_options, **changes))
    assert time.monotonic() - started < 30


def test_a_submission_made_on_ray_describes_the_worker_nodes():
    from submission.system import build_system_description

    cluster = {"ray_version": "2.60.0", "number_of_nodes": 2, "workers": 2, "cpus_per_worker": [16],
               "nodes": [{"hostname": "a", "cpu_model": "Xeon 8480", "node_cpus": 16, "workers": 1},
                         {"hostname": "b", "cpu_model": "Xeon 8480", "node_cpus": 16, "workers": 1}]}
    description = build_system_description({"submitter": "Org"}, division="open", submitter=None, backend="deepsparse",
                                           cluster=cluster)
    assert description["number_of_nodes"] == "2"
    assert description["host_processor_model_name"] == "Xeon 8480" and description["host_processor_core_count"] == "16"
    assert "Ray 2.60.0 cluster of 2 node(s)" in description["hw_notes"]
