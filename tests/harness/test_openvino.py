"""The OpenVINO backend on any x86 CPU: it runs an INT8 model's QDQ form with 8-bit matmuls, agrees with ONNX
Runtime, reads back the precision it executed, refuses what a model cannot do, and serves every scenario."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from compression.benchmark_model import build_benchmark_model
from compression.synthetic import synthetic_qa_batch
from harness.backends.openvino_backend import OpenVinoOptions
from harness.backends import BackendOptions, create_backend
from harness.errors import ConfigError
from harness.models import inspect_onnx_model
from harness.runner import RunRequest, execute_run
from harness.scenarios import SutOptions
from harness.loadgen_settings import LoadGenOverrides
from harness.sysinfo import REPO_ROOT


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Untrained tiny-geometry model directories of the harness's INT8 default and the dense FP32 variant."""
    root = tmp_path_factory.mktemp("openvino-models")
    return {variant: build_benchmark_model(root / variant, vocab=None, variant=variant, preset="tiny", seed=3,
                                           packed_variant=False)
            for variant in ("sparse-int8", "dense-fp32")}


def _logits(backend, batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    feed = {name: tensor.numpy() for name, tensor in synthetic_qa_batch(batch, 384, seed=11).items()}
    return backend.predict(feed["input_ids"], feed["attention_mask"], feed["token_type_ids"])


def _ort_logits(onnx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime

    feed = {name: tensor.numpy() for name, tensor in synthetic_qa_batch(2, 384, seed=11).items()}
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return tuple(session.run(["start_logits", "end_logits"], feed))


def _cpu_has_native_bf16() -> bool:
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_an_int8_model_runs_its_qdq_form_in_int8_and_agrees_with_onnx_runtime(tiny_models):
    model_dir = tiny_models["sparse-int8"]
    backend = create_backend("openvino", inspect_onnx_model(model_dir / "model.onnx"),
                             BackendOptions(batch_size=2, engine=OpenVinoOptions(precision="f32")))
    try:
        described = backend.describe()
        assert described["model_file"] == str(model_dir / "model-qdq.onnx")
        executed = described["executed_precision"]
        assert executed["matmuls"] == "int8" and executed["float_ops"] == "f32"
        assert executed["int8_matmuls"] == executed["matmul_nodes"] > 0
        # every weight matmul reads its int8 weights straight from a constant: what the sparse-weight kernels need
        assert executed["weight_sources"] == {"Const": executed["matmul_nodes"]}
        assert described["precision"] == "int8 (float ops f32)"
        start, end = _logits(backend)
    finally:
        backend.close()
    # the DeepSparse form of the same model in ONNX Runtime: the export's INT8 tolerance (2% of the logit scale)
    ref_start, ref_end = _ort_logits(model_dir / "model.onnx")
    scale = max(np.abs(ref_start).max(), np.abs(ref_end).max())
    assert max(np.abs(start - ref_start).max(), np.abs(end - ref_end).max()) <= 1e-5 + 0.02 * scale


def test_precision_is_read_back_from_the_compiled_model(tiny_models, caplog):
    model = inspect_onnx_model(tiny_models["dense-fp32"] / "model.onnx")
    f32 = create_backend("openvino", model, BackendOptions(batch_size=2, engine=OpenVinoOptions(precision="f32")))
    try:
        assert f32.describe()["executed_precision"]["float_ops"] == "f32"
        assert f32.describe()["executed_precision"]["matmuls"] == "f32" and f32.describe()["precision"] == "f32"
        start, end = _logits(f32)
    finally:
        f32.close()
    ref_start, ref_end = _ort_logits(model.onnx_path)
    np.testing.assert_allclose(start, ref_start, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(end, ref_end, atol=1e-5, rtol=1e-4)

    with caplog.at_level(logging.WARNING):
        bf16 = create_backend("openvino", model, BackendOptions(batch_size=2, engine=OpenVinoOptions(precision="bf16")))
    try:
        executed = bf16.describe()["executed_precision"]["float_ops"]
    finally:
        bf16.close()
    if _cpu_has_native_bf16():
        assert executed == "bf16"
    else:  # the request is not what ran: recorded as what ran, and said
        assert executed == "f32" and "runs the float operations in f32" in caplog.text


def test_int8_is_refused_for_a_float_model_with_the_file_named(tiny_models):
    model = inspect_onnx_model(tiny_models["dense-fp32"] / "model.onnx")
    with pytest.raises(ConfigError, match=r"--precision int8: .*model\.onnx is not quantized"):
        create_backend("openvino", model, BackendOptions(batch_size=2, engine=OpenVinoOptions(precision="int8")))


def test_the_deepsparse_operator_form_alone_is_run_with_a_warning(tiny_models, tmp_path, caplog):
    """A file in MatMulInteger form without its QDQ sibling (an older export) still runs, in float, and says why
    it is slow; --precision int8 refuses it."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(tiny_models["sparse-int8"] / "model.onnx", alone / "model.onnx")
    model = inspect_onnx_model(alone / "model.onnx")
    with caplog.at_level(logging.WARNING):
        backend = create_backend("openvino", model, BackendOptions(batch_size=1, engine=OpenVinoOptions(precision="f32")))
    try:
        assert backend.describe()["executed_precision"]["matmuls"] == "f32"
    finally:
        backend.close()
    assert "MatMulInteger" in caplog.text and "model-qdq.onnx" in caplog.text
    with pytest.raises(Exception, match="--precision int8"):
        create_backend("openvino", model, BackendOptions(batch_size=1, engine=OpenVinoOptions(precision="int8")))


def test_warnings_and_errors_name_the_users_model_once_not_the_bucket_copies(tiny_models, tmp_path, caplog):
    """Length bucketing compiles temporary copies of the model (model-seq192.onnx, ...): what OpenVINO says about the
    model names the user's file, once, with the measured cost of the form it was given."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(tiny_models["sparse-int8"] / "model.onnx", alone / "model.onnx")
    model = inspect_onnx_model(alone / "model.onnx")
    with caplog.at_level(logging.WARNING):
        backend = create_backend("openvino", model, BackendOptions(batch_size=1, sequence_buckets=(192, 384),
                                                                   engine=OpenVinoOptions(precision="f32")))
    backend.close()
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(alone / "model.onnx") in warnings[0] and "model-seq" not in warnings[0]
    assert "measured 9x slower than its QDQ form on an AMX Xeon (docs/running.md, Which engine)" in warnings[0]
    dense = inspect_onnx_model(tiny_models["dense-fp32"] / "model.onnx")
    with pytest.raises(ConfigError) as error:
        create_backend("openvino", dense, BackendOptions(batch_size=1, sequence_buckets=(192, 384), engine=OpenVinoOptions(precision="int8")))
    assert f"--precision int8: {dense.onnx_path} is not quantized" in str(error.value)
    assert "model-seq" not in str(error.value)


def test_a_missing_qdq_file_named_by_the_manifest_is_one_clear_error(tiny_models, tmp_path):
    from harness.errors import ModelError

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["sparse-int8"], copy)
    (copy / "model-qdq.onnx").unlink()
    with pytest.raises(ModelError, match=r"model-qdq\.onnx: named as the QDQ form by .*manifest\.json"):
        create_backend("openvino", inspect_onnx_model(copy / "model.onnx"), BackendOptions(batch_size=1))


def test_perf_counters_record_where_the_time_goes_over_every_bucket_engine(tiny_models):
    """--perf-counters: OpenVINO's per-node counters summed by layer type and kernel over every inference of every
    length-bucket engine, the INT8 model's matmuls on 8-bit kernels."""
    from engine_introspection.openvino import profile_per_sample

    model = inspect_onnx_model(tiny_models["sparse-int8"] / "model.onnx")
    options = BackendOptions(batch_size=2, sequence_buckets=(192, 384), engine=OpenVinoOptions(perf_counters=True))
    backend = create_backend("openvino", model, options)
    try:
        before = backend.describe()["layer_profile"]["samples"]  # the bucket check's own inferences count too
        for length in (100, 300, 300):  # one call at the short bucket, two at the long one
            ids = np.ones((2, 384), dtype=np.int64)
            mask = (np.arange(384) < length).astype(np.int64)[None].repeat(2, axis=0)
            backend.predict(ids, mask, np.zeros_like(ids))
        profile = backend.describe()["layer_profile"]
    finally:
        backend.close()
    assert profile["samples"] == before + 6
    matmuls = [layer for layer in profile["layers"] if layer["layer_type"] == "FullyConnected"]
    assert matmuls and all(layer["exec_type"].lower().endswith("i8") for layer in matmuls)
    summary = profile_per_sample(profile)
    assert summary["ms_per_sample"] > 0 and sum(layer["share"] for layer in summary["layers"]) == pytest.approx(1, abs=1e-3)
    plain = create_backend("openvino", model, BackendOptions(batch_size=2))
    try:
        assert "layer_profile" not in plain.describe()
    finally:
        plain.close()


def test_streams_threads_and_sparse_weights_map_onto_openvino(tiny_models):
    model = inspect_onnx_model(tiny_models["sparse-int8"] / "model.onnx")
    backend = create_backend("openvino", model, BackendOptions(batch_size=1, num_streams=2, num_cores=2,
                                                               engine=OpenVinoOptions(sparse_weights_rate=0.5)))
    try:
        described = backend.describe()
        assert described["num_streams"] == 2 == backend.parallelism == backend.compute_streams
        assert described["performance_hint"] == "THROUGHPUT" and described["inference_num_threads"] == 2
        assert described["sparse_weights_decompression_rate"] == pytest.approx(0.5)
    finally:
        backend.close()
    single = create_backend("openvino", model, BackendOptions(batch_size=1))
    try:
        assert single.describe()["num_streams"] == 1 and single.describe()["performance_hint"] == "LATENCY"
    finally:
        single.close()
    with pytest.raises(ConfigError, match="--sparse-weights-rate must be within 0..1"):
        OpenVinoOptions(sparse_weights_rate=1.5)


@pytest.fixture(scope="module")
def sample(sample_features):
    return sample_features[:2]


def _run(sample, model_dir: Path, tmp_path: Path, backend: str, **changes) -> dict:
    dataset, features = sample
    options = BackendOptions(batch_size=4, sequence_buckets=(128, 192, 384), num_streams=2, engine=OpenVinoOptions(precision="f32"))
    fields = dict(scenario="Offline", mode="accuracy", backend=backend, model=inspect_onnx_model(model_dir / "model.onnx"),
                  features=features, dataset=dataset, backend_options=options, sut_options=SutOptions(num_workers=2),
                  mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", runs_root=tmp_path / backend,
                  overrides=LoadGenOverrides(min_duration_ms=300, min_query_count=len(features), target_qps=500),
                  progress=False)
    fields.update(changes)
    return execute_run(RunRequest(**fields))


def _responses(record: dict) -> dict[int, np.ndarray]:
    entries = json.loads((Path(record["run_dir"]) / "mlperf_log_accuracy.json").read_text())
    return {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float32).reshape(-1, 2) for e in entries}


def test_accuracy_runs_agree_with_onnx_runtime_on_the_same_qdq_file(sample, tiny_models, tmp_path):
    """Same QDQ file, OpenVINO (f32 float operations) and ONNX Runtime, bucketed, over the built-in sample: every
    response within the INT8 tolerance and the same score within a question's worth of F1."""
    from harness.backends.openvino_backend import openvino_model

    model_dir = tiny_models["sparse-int8"]
    qdq_dir = tmp_path / "qdq-only"  # ONNX Runtime runs model.onnx: give it the QDQ form under that name
    qdq_dir.mkdir()
    shutil.copyfile(model_dir / "model-qdq.onnx", qdq_dir / "model.onnx")
    ours = _run(sample, model_dir, tmp_path, "openvino")
    peer = _run(sample, qdq_dir, tmp_path, "onnxruntime")
    assert ours["status"] == peer["status"] == "complete"
    assert ours["backend"]["model_file"] == str(openvino_model(inspect_onnx_model(model_dir / "model.onnx"),
                                                                         BackendOptions()).onnx_path)
    a, b = _responses(ours), _responses(peer)
    assert a.keys() == b.keys() and len(a) == len(sample[1])
    scale = max(float(np.abs(v).max()) for v in b.values())
    assert max(float(np.abs(a[i] - b[i]).max()) for i in a) <= 1e-5 + 0.02 * scale
    assert abs(ours["accuracy"]["f1"] - peer["accuracy"]["f1"]) <= 100.0 / ours["accuracy"]["examples_scored"]


@pytest.mark.parametrize("scenario", ["Server", "SingleStream"])
def test_latency_scenarios_run_on_openvino(sample, tiny_models, tmp_path, scenario):
    overrides = LoadGenOverrides(min_duration_ms=500, min_query_count=20, target_qps=50, expected_latency_ms=5)
    record = _run(sample, tiny_models["sparse-int8"], tmp_path, "openvino", scenario=scenario, mode="performance",
                  backend_options=BackendOptions(batch_size=1, sequence_buckets=(192, 384)),
                  sut_options=SutOptions(num_workers=1), overrides=overrides)
    assert record["status"] == "complete" and record["backend"]["backend"] == "openvino"
    assert record["backend"]["executed_precision"]["matmuls"] == "int8"
    assert record["summary"].startswith("[COMPLETE] openvino int8 (float ops ")


def test_the_default_model_is_rebuilt_with_its_qdq_forms_when_openvino_needs_them(tmp_path, monkeypatch, capsys):
    """A default benchmark model built before INT8 exports carried their QDQ form is rebuilt once OpenVINO runs it
    (the same seed gives the same model); other engines keep using it as it is."""
    from harness.run_inputs import BENCHMARK_PRESET_ENV, MODELS_DIR_ENV, benchmark_model_dir

    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(BENCHMARK_PRESET_ENV, "tiny")
    vocab = tmp_path / "vocab.txt"  # not the bert-base-uncased vocab: no tokenizer files, which this test does not need
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]) + "\n")
    model_dir = benchmark_model_dir("sparse-int8", vocab)
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["qdq"]["onnx_file"] == "model-qdq.onnx"
    assert manifest["packed"]["qdq_onnx_file"] == "model-packed-qdq.onnx" and (model_dir / "model-packed-qdq.onnx").is_file()
    # as an older build left it
    (model_dir / "model-qdq.onnx").unlink()
    manifest_path.write_text(json.dumps({**manifest, "qdq": None}))
    capsys.readouterr()
    assert benchmark_model_dir("sparse-int8", vocab, packed=True) == model_dir
    assert "building" not in capsys.readouterr().err  # DeepSparse and ONNX Runtime do not need it
    benchmark_model_dir("sparse-int8", vocab, qdq=True)
    assert "to add its QDQ form for OpenVINO" in capsys.readouterr().err
    assert json.loads(manifest_path.read_text())["qdq"] == {"onnx_file": "model-qdq.onnx", "weight_layout": "out_in"}
    assert (model_dir / "model-qdq.onnx").is_file()
    # a QDQ form from before its weights kept torch's layout (its manifest names no weight_layout) is rebuilt too
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "qdq": {"onnx_file": "model-qdq.onnx"}}))
    capsys.readouterr()
    benchmark_model_dir("sparse-int8", vocab, qdq=True)
    assert "in the weight layout OpenVINO's sparse kernels read" in capsys.readouterr().err
    assert json.loads(manifest_path.read_text())["qdq"]["weight_layout"] == "out_in"
    benchmark_model_dir("sparse-int8", vocab, qdq=True)
    assert "building" not in capsys.readouterr().err  # once rebuilt, kept


def test_a_submission_on_openvino_names_the_engine_and_its_version():
    from importlib.metadata import version

    from submission.system import build_system_description

    description = build_system_description({"submitter": "Org"}, division="open", submitter=None, backend="openvino")
    assert description["framework"] == f"OpenVINO {version('openvino')}"  # the pinned package, 2026.4.1
