"""Sequence packing (harness.packing) and the packed model variant (compression.packed): every window's
logits from a packed row equal its logits alone, in PyTorch and through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.backends.cluster import RayOptions
from harness.backends.openvino_backend import OpenVinoOptions
from harness.packing import pack_windows, packed_inputs, padding_share, unpack_logits

ROW = 96


def _windows(count: int, seed: int = 0, max_length: int = ROW, longest: int = ROW):
    """Random windows laid out like the QSL's: [CLS] ... [SEP], then [PAD] (id 0) up to ``max_length``; real
    lengths 6..``longest``."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, longest + 1, size=count)
    input_ids = np.zeros((count, max_length), dtype=np.int64)
    token_type_ids = np.zeros((count, max_length), dtype=np.int64)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = rng.integers(1000, 30000, size=n)
        input_ids[i, 0], input_ids[i, n - 1] = 101, 102
        token_type_ids[i, n // 2:n] = 1
    return input_ids, token_type_ids, lengths


def test_every_window_is_placed_once_and_no_row_overflows():
    lengths = np.array([90, 10, 50, 45, 96, 3, 30, 20, 60])
    rows = pack_windows(np.arange(lengths.size), lengths, ROW)
    placed = sorted(w for row in rows for w in row.windows)
    assert placed == list(range(lengths.size))
    for row in rows:
        ends = [o + lengths[w] for w, o in zip(row.windows, row.offsets)]
        assert max(ends) <= ROW
        # windows do not overlap and keep a one-token gap
        for (w, o), next_offset in zip(zip(row.windows, row.offsets), row.offsets[1:]):
            assert next_offset == o + lengths[w] + 1
    assert len(rows) <= 5  # best-fit decreasing: 403 tokens (+ gaps) in rows of 96
    assert pack_windows(np.arange(lengths.size), lengths, ROW) == rows  # deterministic
    assert 0 < padding_share(rows, lengths, ROW) < 1 - lengths.sum() / (lengths.size * ROW)
    with pytest.raises(ValueError, match="window lengths must be 1..96"):
        pack_windows(np.arange(2), np.array([10, 97]), ROW)


def test_packing_real_window_lengths_pads_less_than_four_buckets(sample_features):
    from harness.bucketing import padded_tokens_per_window

    features = sample_features[1]
    lengths = features.seq_lengths
    rows = pack_windows(np.arange(lengths.size), lengths, features.params.max_seq_length)
    packed_tokens = len(rows) * features.params.max_seq_length / lengths.size
    bucketed = padded_tokens_per_window(lengths, (128, 192, 256, 384), features.params.max_seq_length)
    assert packed_tokens < bucketed


def _alone(model, input_ids, token_type_ids, lengths):
    mask = (np.arange(input_ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask),
                    token_type_ids=torch.from_numpy(token_type_ids))
    return out.start_logits.numpy(), out.end_logits.numpy()


def _unpacked(rows, start, end, lengths, width: int = ROW):
    out = np.full((len(lengths), width), -10000.0, dtype=np.float32), np.full((len(lengths), width), -10000.0,
                                                                              dtype=np.float32)
    unpack_logits(rows, start, end, lengths, *out)
    return out


def _assert_same_real_logits(unpacked, alone, lengths, atol):
    for window, n in enumerate(lengths):
        np.testing.assert_allclose(unpacked[0][window, :n], alone[0][window, :n], atol=atol, rtol=0)
        np.testing.assert_allclose(unpacked[1][window, :n], alone[1][window, :n], atol=atol, rtol=0)
        assert np.all(unpacked[0][window, n:] == -10000.0)  # untouched past the window


@pytest.fixture(scope="module")
def tiny_mobilebert():
    from compression.architecture import build_model

    model = build_model("tiny", num_layers=2, seed=3)
    # trigram input: a [PAD] between windows stands in for the neighbour each window sees alone
    assert model.config.trigram_input and torch.all(model.mobilebert.embeddings.word_embeddings.weight[0] == 0)
    return model


def test_packed_rows_give_each_window_its_own_logits_in_pytorch(tiny_mobilebert):
    from compression.packed import PackedQAModel

    input_ids, token_type_ids, lengths = _windows(7, seed=1)
    rows = pack_windows(np.arange(7), lengths, ROW)
    assert len(rows) < 7  # some rows really hold several windows
    feeds = packed_inputs(rows, input_ids, token_type_ids, lengths, ROW)
    with torch.no_grad():
        start, end = PackedQAModel(tiny_mobilebert)(*(torch.from_numpy(feeds[k]) for k in
                                                     ("input_ids", "window_ids", "token_type_ids", "position_ids")))
    unpacked = _unpacked(rows, start.numpy(), end.numpy(), lengths)
    _assert_same_real_logits(unpacked, _alone(tiny_mobilebert, input_ids, token_type_ids, lengths), lengths, atol=1e-4)


def test_without_the_gap_mobilebert_windows_would_see_their_neighbours(tiny_mobilebert):
    from compression.packed import PackedQAModel

    input_ids, token_type_ids, lengths = _windows(7, seed=1)
    rows = pack_windows(np.arange(7), lengths, ROW, gap=0)
    feeds = packed_inputs(rows, input_ids, token_type_ids, lengths, ROW)
    with torch.no_grad():
        start, end = PackedQAModel(tiny_mobilebert)(*(torch.from_numpy(feeds[k]) for k in
                                                     ("input_ids", "window_ids", "token_type_ids", "position_ids")))
    unpacked = _unpacked(rows, start.numpy(), end.numpy(), lengths)
    with pytest.raises(AssertionError):  # the check above can fail: the gap is what makes it pass
        _assert_same_real_logits(unpacked, _alone(tiny_mobilebert, input_ids, token_type_ids, lengths), lengths, atol=1e-4)


def test_packed_onnx_variant_matches_through_onnx_runtime(tiny_mobilebert, tmp_path):
    import onnxruntime as ort

    from compression.export import export_onnx
    from compression.packed import PACKED_INPUT_NAMES

    path = export_onnx(tiny_mobilebert, tmp_path / "packed.onnx", sequence_length=ROW, quantized=False, packed=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(PACKED_INPUT_NAMES)
    input_ids, token_type_ids, lengths = _windows(9, seed=2)
    rows = pack_windows(np.arange(9), lengths, ROW)
    feeds = packed_inputs(rows, input_ids, token_type_ids, lengths, ROW)
    start, end = session.run(None, feeds)
    unpacked = _unpacked(rows, start, end, lengths)
    _assert_same_real_logits(unpacked, _alone(tiny_mobilebert, input_ids, token_type_ids, lengths), lengths, atol=1e-4)


def test_packed_int8_export_goes_through_the_one_export_path(tmp_path):
    """The QAT benchmark model (tiny geometry) exports packed with INT8 operators, and its windows' logits
    agree with the plain INT8 export of the same model."""
    import onnx
    import onnxruntime as ort

    from compression.benchmark_model import DEFAULT_VARIANT, prepare_benchmark_model
    from compression.export import export_onnx

    prepared = prepare_benchmark_model(DEFAULT_VARIANT, preset="tiny", work_dir=tmp_path / "work")
    packed_path = export_onnx(prepared.model, tmp_path / "packed.onnx", sequence_length=ROW, quantized=True, packed=True)
    plain_path = export_onnx(prepared.model, tmp_path / "plain.onnx", sequence_length=ROW, quantized=True)
    ops = {node.op_type for node in onnx.load(str(packed_path)).graph.node}
    assert ops & {"MatMulInteger", "QLinearMatMul"}
    input_ids, token_type_ids, lengths = _windows(6, seed=4, longest=40)
    rows = pack_windows(np.arange(6), lengths, ROW)
    assert len(rows) <= 3  # several windows per row
    start, end = ort.InferenceSession(str(packed_path)).run(None, packed_inputs(rows, input_ids, token_type_ids,
                                                                                 lengths, ROW))
    mask = (np.arange(ROW)[None, :] < lengths[:, None]).astype(np.int64)
    alone = ort.InferenceSession(str(plain_path)).run(None, {"input_ids": input_ids, "attention_mask": mask,
                                                             "token_type_ids": token_type_ids})
    # INT8: rounding may flip a quantization step where float sums differ in the last bits
    scale = float(np.abs(alone[0]).max())
    _assert_same_real_logits(_unpacked(rows, start, end, lengths), alone, lengths,
                             atol=0.02 * scale)


# -- the harness's packed backend (--packing) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def packed_models(tmp_path_factory):
    """Tiny benchmark model directories with their packed variants: INT8 (the product's precision) and FP32 (where
    packed and alone agree to float rounding, so predictions can be compared exactly)."""
    from compression.benchmark_model import build_benchmark_model
    from harness.models import inspect_onnx_model

    root = tmp_path_factory.mktemp("packed-models")
    dirs = {variant: build_benchmark_model(root / variant, vocab=None, variant=variant, preset="tiny", seed=7,
                                           verify=False) for variant in ("sparse-int8", "dense-fp32")}
    return {variant: inspect_onnx_model(path / "model.onnx") for variant, path in dirs.items()}


def _packed_run(sample, model, tmp_path, name: str, backend: str = "onnxruntime", **options):
    from harness.backends import BackendOptions
    from harness.runner import RunRequest, execute_run
    from harness.scenarios import SutOptions
    from harness.loadgen_settings import LoadGenOverrides
    from harness.sysinfo import REPO_ROOT

    dataset, features = sample
    request = RunRequest(
        scenario="Offline", mode="accuracy", backend=backend, model=model, features=features, dataset=dataset,
        backend_options=BackendOptions(**{"batch_size": 2, **options}), sut_options=SutOptions(num_workers=2),
        mlperf_conf=REPO_ROOT / "mlperf.conf", user_conf=REPO_ROOT / "user.conf", runs_root=tmp_path / name,
        overrides=LoadGenOverrides(min_duration_ms=300, min_query_count=len(features), target_qps=500), progress=False)
    return execute_run(request)


def _responses(record) -> dict[int, np.ndarray]:
    import json
    from pathlib import Path

    from harness.loadgen_logs import ACCURACY_LOG

    entries = json.loads((Path(record["run_dir"]) / ACCURACY_LOG).read_text())
    return {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), dtype=np.float32).reshape(-1, 2) for e in entries}


def test_a_packed_offline_run_answers_every_window_with_its_own_logits(sample_features, packed_models, tmp_path):
    """FP32: through the harness, each window's real-token logits equal the unpacked run's, its padding positions
    are PAD_LOGIT, rows really hold several windows, and the scores equal the unpacked run's rescored with its
    padding positions masked the same way (packing never lets a padding position into the n-best)."""
    import json

    from harness.accuracy import PAD_LOGIT, evaluate_accuracy_log

    sample = sample_features[:2]
    features = sample[1]
    model = packed_models["dense-fp32"]
    plain = _packed_run(sample, model, tmp_path, "plain")
    packed = _packed_run(sample, model, tmp_path, "packed", packing=True)
    info = packed["backend"]["packing"]
    assert info["windows"] == len(features) + info["rows_per_engine_call"]  # + the warm-up batch
    assert info["windows_per_row"] > 1.5 and info["padding_share"] < 0.35
    assert info["check"]["max_abs_diff"] <= info["check"]["allowed"]
    lengths = features.seq_lengths
    plain_logits, packed_logits = _responses(plain), _responses(packed)
    assert plain_logits.keys() == packed_logits.keys() == set(range(len(features)))
    masked = []
    for index, logits in plain_logits.items():
        n = int(lengths[index])
        np.testing.assert_allclose(packed_logits[index][:n], logits[:n], atol=1e-4, rtol=0)
        assert np.all(packed_logits[index][n:] == PAD_LOGIT)
        ours = logits.copy()
        ours[n:] = PAD_LOGIT
        masked.append({"qsl_idx": index, "data": ours.tobytes().hex()})
    log_path = tmp_path / "masked" / "mlperf_log_accuracy.json"
    log_path.parent.mkdir()
    log_path.write_text(json.dumps(masked))
    rescored = evaluate_accuracy_log(log_path, features, log_path.parent)
    assert packed["accuracy"]["f1"] == rescored["f1"] and packed["accuracy"]["exact_match"] == rescored["exact_match"]


@pytest.mark.parametrize("backend", ["deepsparse", "onnxruntime", "openvino"])
def test_offline_batches_fill_one_engine_call_each(sample_features, packed_models, tmp_path, backend):
    """INT8 through every engine: the Offline query is packed once and cut so that every predict call is one
    engine call of full rows (no second, mostly empty call), and the logits stay those of the window alone.
    OpenVINO runs the packed variant's QDQ form, with INT8 matmuls."""
    model, sample = packed_models["sparse-int8"], sample_features[:2]
    record = _packed_run(sample, model, tmp_path, backend, backend=backend, packing=True, batch_size=4,
                         engine=OpenVinoOptions(precision="f32"))
    info = record["backend"]["packing"]
    if backend == "openvino":
        assert info["variant"].endswith("model-packed-qdq.onnx")
        assert record["backend"]["executed_precision"]["matmuls"] == "int8"
    else:
        assert info["variant"].endswith("model-packed.onnx")
    assert info["engine_calls"] == record["batches_run"] + record["warmup_batches"]
    assert info["rows"] <= 4 * info["engine_calls"]
    plain = _responses(_packed_run(sample, model, tmp_path, backend + "-plain", backend="onnxruntime"))
    lengths = sample[1].seq_lengths
    scale = max(float(np.abs(v[:int(lengths[i])]).max()) for i, v in plain.items())
    for index, logits in _responses(record).items():
        n = int(lengths[index])
        # INT8: a quantization step may flip where two float sums differ in their last bits
        np.testing.assert_allclose(logits[:n], plain[index][:n], atol=0.02 * scale + 1e-4, rtol=0)


def test_packing_is_refused_where_it_cannot_work(packed_models, tmp_path):
    import json
    import shutil

    from harness.backends import BackendOptions, create_backend
    from harness.errors import ConfigError, ModelError
    from harness.models import inspect_onnx_model
    from harness.engine_settings import EngineSettings

    from harness.scenarios import SutOptions

    with pytest.raises(ConfigError, match="--packing is for Offline and for Server with --server-policy tokens; Server"):
        EngineSettings(packing=True, buckets=(), sut=SutOptions(server_policy="aging")).for_scenario("Server")
    with pytest.raises(ConfigError, match="--packing is for Offline and for Server with --server-policy tokens; Single"):
        EngineSettings(packing=True, buckets=()).for_scenario("SingleStream")
    # Server's token-budget batches fill packed rows: engine calls of 1, 2, 4 or 8 rows
    tokens, _ = EngineSettings(backend="onnxruntime", packing=True, buckets=(),
                               sut=SutOptions(server_policy="tokens")).for_scenario("Server")
    assert tokens.packing and tokens.batch_sizes == (1, 2, 4, 8)
    with pytest.raises(ConfigError, match="--packing replaces length bucketing"):
        BackendOptions(packing=True, sequence_buckets=(128, 384))
    with pytest.raises(ConfigError, match="not with --cluster ray"):
        BackendOptions(packing=True, ray=RayOptions(cluster="ray"))
    # a model directory without the variant: the error names it
    bare = tmp_path / "bare"
    shutil.copytree(packed_models["dense-fp32"].model_dir, bare)
    manifest = json.loads((bare / "manifest.json").read_text())
    (bare / "manifest.json").write_text(json.dumps({**manifest, "packed": None}))
    with pytest.raises(ConfigError, match=f"--packing: {bare} has no packed-input variant"):
        create_backend("onnxruntime", inspect_onnx_model(bare / "model.onnx"), BackendOptions(packing=True))
    # the packed variant of another model (here: the INT8 one) does not compute this model: refused
    swapped = tmp_path / "swapped"
    shutil.copytree(packed_models["dense-fp32"].model_dir, swapped)
    shutil.copyfile(packed_models["sparse-int8"].model_dir / "model-packed.onnx", swapped / "model-packed.onnx")
    with pytest.raises(ModelError, match="the packed variant does not compute the same model"):
        create_backend("onnxruntime", inspect_onnx_model(swapped / "model.onnx"), BackendOptions(packing=True))


def test_openvino_packed_rows_at_its_default_precision_answer_like_the_windows_alone(sample_features, packed_models,
                                                                                     tmp_path):
    """OpenVINO at its default precision (float operations in bf16 where the CPU has them): a packed variant compiled
    with a static batch answered garbage on a trained model (F1 3.6 against 81.9), so packed variants get a bounded
    batch axis; the logits must stay those of the window alone, within bf16 rounding."""
    model, sample = packed_models["dense-fp32"], sample_features[:2]
    record = _packed_run(sample, model, tmp_path, "ov-packed", backend="openvino", packing=True, batch_size=4)
    plain = _responses(_packed_run(sample, model, tmp_path, "ort-plain", backend="onnxruntime"))
    lengths = sample[1].seq_lengths
    scale = max(float(np.abs(v[:int(lengths[i])]).max()) for i, v in plain.items())
    for index, logits in _responses(record).items():
        n = int(lengths[index])
        np.testing.assert_allclose(logits[:n], plain[index][:n], atol=0.05 * scale + 1e-3, rtol=0)
