"""Length bucketing: batches hold one bucket, the backend routes each batch to the shortest engine that
holds it, results equal full-length runs, and a model whose output depends on padding is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.backends.openvino_backend import OpenVinoOptions
from harness.backends import BackendOptions, create_backend
from harness.backends.bucketed import BucketedBackend
from harness.bucketing import (
    bucket_batches,
    bucket_index,
    buckets_for,
    padded_tokens_per_window,
    parse_buckets,
)
from harness.errors import ConfigError, ModelError
from harness.loadgen_logs import ACCURACY_LOG
from harness.models import inspect_onnx_model
from harness.runner import RunRequest, execute_run
from harness.scenarios import SutOptions
from harness.loadgen_settings import LoadGenOverrides
from harness.sysinfo import REPO_ROOT
from tests.onnx_fixtures import toy_expected, write_toy_qa_model

BUCKETS = (16, 32, 64, 384)


def test_parse_buckets_and_the_window_length_is_always_a_bucket():
    assert parse_buckets("256, 128,192") == (128, 192, 256)
    assert parse_buckets("off") is None
    assert buckets_for((128, 256), 384) == (128, 256, 384)
    assert buckets_for(None, 384) is None
    with pytest.raises(ConfigError, match="--buckets '128,abc'"):
        parse_buckets("128,abc")
    with pytest.raises(ConfigError, match=r"exceed the window length 384"):
        buckets_for((128, 512), 384)
    with pytest.raises(ConfigError, match=">= 8"):
        parse_buckets("0,384")
    for empty in ("", " ", ","):  # an unset shell variable must not turn bucketing off silently
        with pytest.raises(ConfigError, match=f"--buckets '{empty}': no sequence lengths given"):
            parse_buckets(empty)


def test_bucket_batches_are_bucket_pure_and_keep_every_item():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 385, size=203)
    items = list(range(203))
    batches = bucket_batches(items, lengths, BUCKETS, batch_size=8)
    assert sorted(i for b in batches for i in b) == items
    assert all(1 <= len(b) <= 8 for b in batches)
    for batch in batches:
        assert len(set(bucket_index(BUCKETS, lengths[batch]).tolist())) == 1
    # Within a bucket the issue order is kept.
    for batch in batches:
        assert batch == sorted(batch)
    assert bucket_batches(items, lengths, None, 50) == [items[0:50], items[50:100], items[100:150],
                                                         items[150:200], items[200:203]]


def test_bucket_index_is_the_smallest_bucket_that_holds_the_window():
    assert bucket_index(BUCKETS, np.array([1, 16, 17, 32, 33, 64, 65, 384])).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="longer than the largest bucket"):
        bucket_index(BUCKETS, np.array([385]))
    lengths = np.array([10, 20, 100])
    assert padded_tokens_per_window(lengths, BUCKETS, 384) == pytest.approx((16 + 32 + 384) / 3)
    assert padded_tokens_per_window(lengths, None, 384) == 384


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    return inspect_onnx_model(write_toy_qa_model(tmp_path_factory.mktemp("toy") / "model.onnx", seq_len=384))


def _windows(lengths: list[int], width: int = 384):
    rng = np.random.default_rng(1)
    lengths_arr = np.asarray(lengths)
    mask = (np.arange(width)[None, :] < lengths_arr[:, None]).astype(np.int64)
    ids = rng.integers(1000, 3000, size=(len(lengths), width), dtype=np.int64) * mask
    types = (np.arange(width)[None, :] >= 3).astype(np.int64) * mask
    return ids, mask, types


@pytest.mark.parametrize("engine", ["onnxruntime", "deepsparse", "openvino"])
def test_bucketed_backend_routes_each_batch_to_the_shortest_engine(toy_model, engine):
    # OpenVINO in f32: its default on CPUs with native BF16 would round the toy model's float math to bf16
    backend = create_backend(engine, toy_model, BackendOptions(batch_size=4, sequence_buckets=BUCKETS, engine=OpenVinoOptions(precision="f32")))
    try:
        assert isinstance(backend, BucketedBackend) and backend.sequence_buckets == BUCKETS
        assert backend.check["max_abs_diff"] == 0.0  # the toy model is per-token: bit-identical
        for lengths, bucket in (([5, 16], 16), ([3, 17, 9], 32), ([64, 1], 64), ([65, 2, 2, 2], 384)):
            ids, mask, types = _windows(lengths)
            start, end = backend.predict(ids, mask, types)
            assert start.shape == end.shape == (len(lengths), bucket)
            want_start, want_end = toy_expected(ids, mask, types)
            # vs numpy: the engine may fuse multiply-add (1 ulp)
            np.testing.assert_allclose(start, want_start[:, :bucket], rtol=1e-6)
            np.testing.assert_allclose(end, want_end[:, :bucket], rtol=1e-6)
        description = backend.describe()
        assert description["sequence_buckets"] == list(BUCKETS) and description["backend"] == engine
    finally:
        backend.close()


def test_a_model_whose_output_depends_on_padding_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    # start = ids * 0.01 + (sequence width) * 0.001: the padded width leaks into every logit.
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", 384]) for n in names]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 384]) for n in ("start_logits", "end_logits")]
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["width"]),
        helper.make_node("Cast", ["width"], ["width_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["width_f", "milli"], ["width_term"]),
        helper.make_node("Mul", ["ids_f", "centi"], ["ids_term"]),
        helper.make_node("Add", ["ids_term", "width_term"], ["start_logits"]),
        helper.make_node("Cast", ["token_type_ids"], ["end_logits"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["unused"], to=TensorProto.FLOAT),
    ]
    initializers = [helper.make_tensor("one", TensorProto.INT64, [], [1]),
                    helper.make_tensor("milli", TensorProto.FLOAT, [], [0.001]),
                    helper.make_tensor("centi", TensorProto.FLOAT, [], [0.01])]
    graph = helper.make_graph(nodes, "padding_dependent", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    info = inspect_onnx_model(path)
    with pytest.raises(ModelError, match=r"model\.onnx: at sequence length 128 .*--no-bucketing"):
        create_backend("onnxruntime", info, BackendOptions(batch_size=2, sequence_buckets=(128, 384)))


@pytest.fixture(scope="module")
def sample(sample_features):
    return sample_features[:2]


def _run(sample, model, tmp_path, name: str, **changes) -> tuple[dict, object]:
    dataset, features = sample
    fields = dict(
        scenario="Offline", mode="accuracy", backend="onnxruntime", model=model, features=features, dataset=dataset,
        backend_options=BackendOptions(batch_size=4), sut_options=SutOptions(num_workers=2),
        mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", runs_root=tmp_path / name,
        overrides=LoadGenOverrides(min_duration_ms=300, min_query_count=len(features), target_qps=500), progress=False,
    )
    fields.update(changes)
    record = execute_run(RunRequest(**fields))
    return record, tmp_path / name / next(p.name for p in (tmp_path / name).iterdir())


def test_bucketed_accuracy_run_gives_the_same_responses_and_scores(sample, toy_model, tmp_path):
    plain, plain_dir = _run(sample, toy_model, tmp_path, "plain")
    bucketed, bucketed_dir = _run(sample, toy_model, tmp_path, "bucketed",
                                  backend_options=BackendOptions(batch_size=4, sequence_buckets=(64, 128, 384)))
    assert bucketed["backend"]["sequence_buckets"] == [64, 128, 384]
    assert bucketed["settings"]["backend_options"]["sequence_buckets"] == (64, 128, 384)
    lengths = sample[1].seq_lengths
    assert (lengths <= 128).any(), "the sample must exercise the short buckets"

    def responses(run_dir):
        return {e["qsl_idx"]: e["data"] for e in json.loads((run_dir / ACCURACY_LOG).read_text())}

    plain_logits, bucketed_logits = responses(plain_dir), responses(bucketed_dir)
    assert plain_logits.keys() == bucketed_logits.keys()
    for index in plain_logits:
        n = int(lengths[index])
        a = np.frombuffer(bytes.fromhex(plain_logits[index]), dtype=np.float32).reshape(384, 2)
        b = np.frombuffer(bytes.fromhex(bucketed_logits[index]), dtype=np.float32).reshape(384, 2)
        np.testing.assert_array_equal(a[:n], b[:n])  # real tokens: identical
    assert (plain_dir / "predictions.json").read_text() == (bucketed_dir / "predictions.json").read_text()
    assert plain["accuracy"] == bucketed["accuracy"]


class RecordingBackend:
    """Delegates to a bucketed backend and records, per batch, the window lengths and the bucket run."""

    batches: list = []  # class-level: the runner builds the wrapper itself

    def __init__(self, inner) -> None:
        self.inner = inner
        RecordingBackend.batches = []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def predict(self, input_ids, attention_mask, token_type_ids):
        start, end = self.inner.predict(input_ids, attention_mask, token_type_ids)
        RecordingBackend.batches.append((attention_mask.sum(axis=1).tolist(), start.shape[1]))
        return start, end


@pytest.mark.parametrize("scenario", ["Offline", "Server"])
def test_batches_run_at_the_smallest_bucket_holding_them(sample, toy_model, tmp_path, scenario):
    buckets = (96, 160, 384)  # the sample's windows are 68..384 tokens, median 108
    overrides = (LoadGenOverrides(min_duration_ms=1500, min_query_count=80, target_qps=100) if scenario == "Server"
                 else LoadGenOverrides(min_duration_ms=300, min_query_count=len(sample[1]), target_qps=500))
    record, _ = _run(sample, toy_model, tmp_path, scenario, scenario=scenario, mode="performance",
                     backend_options=BackendOptions(batch_size=4, sequence_buckets=buckets), overrides=overrides,
                     backend_wrapper=RecordingBackend)
    assert record["status"] == "complete"
    batches = RecordingBackend.batches
    assert sum(len(lengths) for lengths, _ in batches) >= record["results"]["query_count"]
    for lengths, width in batches:
        assert width == buckets[int(bucket_index(buckets, np.array(lengths)).max())]
        if scenario == "Offline":  # bucket-pure batches
            assert len(set(bucket_index(buckets, np.array(lengths)).tolist())) == 1
    assert {width for _, width in batches} == set(buckets), "short windows must run at short lengths"
    if scenario == "Server":
        assert record["results"]["latency_ms"]["p99"] < 130


def test_largest_bucket_must_be_the_window_length(sample, toy_model, tmp_path):
    with pytest.raises(ConfigError, match="largest bucket must be the window length 384"):
        _run(sample, toy_model, tmp_path, "bad", backend_options=BackendOptions(batch_size=4, sequence_buckets=(64, 128)))
    assert not (tmp_path / "bad").exists()  # rejected before a run directory was made


@pytest.mark.parametrize("signal_to_another_thread", [False, True])
def test_ctrl_c_while_bucket_engines_compile_does_not_wait_for_them(toy_model, monkeypatch, signal_to_another_thread):
    """Ctrl-C during the side-by-side compile of the bucket engines: the pool is left at once (a DeepSparse compile
    of the 14-layer model takes ~78 s of a core; waiting for the four made Ctrl-C take 66 s, measured 2026-12-02).
    Also when the kernel hands the signal to another thread (the main thread then learns of it only when it runs
    again: an untimed wait held it for the whole compile)."""
    import os
    import signal
    import threading
    import time

    from harness.backends.bucketed import create_bucketed_backend
    from harness.backends.registry import ENGINES, Engine

    release = threading.Event()

    class SlowEngine(Engine):  # an engine that takes long to build
        def __call__(self, model, options):
            release.wait(20)
            raise RuntimeError("not built")

        def import_library(self):
            pass

    slow_engine = SlowEngine(**{**ENGINES["deepsparse"].__dict__})
    # What a Ctrl-C meets in a foreground process, whatever this one inherited: a suite started in the background
    # (`nohup ./run_tests.sh &` from a non-interactive shell) runs with SIGINT ignored, and no KeyboardInterrupt came
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()  # a real Ctrl-C, mid-compile
    if signal_to_another_thread:  # threads started from here on (the compile pool's) block it too: the timer gets it
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            create_bucketed_backend(slow_engine, toy_model, BackendOptions(batch_size=2, sequence_buckets=(64, 384)),
                                    progress=False)
        assert time.perf_counter() - started < 5
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        signal.signal(signal.SIGINT, previous_handler)
        release.set()
