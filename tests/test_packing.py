"""Sequence packing (harness.packing) and the packed model variant (compression.packed): every window's
logits from a packed row equal its logits alone, in PyTorch and through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
    assert len(rows) <= 5  # first-fit decreasing: 403 tokens (+ gaps) in rows of 96
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


def _assert_same_real_logits(unpacked, alone, lengths, atol):
    for window, (start, end) in unpacked.items():
        n = lengths[window]
        np.testing.assert_allclose(start[:n], alone[0][window, :n], atol=atol, rtol=0)
        np.testing.assert_allclose(end[:n], alone[1][window, :n], atol=atol, rtol=0)
        assert np.all(start[n:] == -10000.0)


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
    unpacked = unpack_logits(rows, start.numpy(), end.numpy(), lengths, ROW, fill=-10000.0)
    _assert_same_real_logits(unpacked, _alone(tiny_mobilebert, input_ids, token_type_ids, lengths), lengths, atol=1e-4)


def test_without_the_gap_mobilebert_windows_would_see_their_neighbours(tiny_mobilebert):
    from compression.packed import PackedQAModel

    input_ids, token_type_ids, lengths = _windows(7, seed=1)
    rows = pack_windows(np.arange(7), lengths, ROW, gap=0)
    feeds = packed_inputs(rows, input_ids, token_type_ids, lengths, ROW)
    with torch.no_grad():
        start, end = PackedQAModel(tiny_mobilebert)(*(torch.from_numpy(feeds[k]) for k in
                                                     ("input_ids", "window_ids", "token_type_ids", "position_ids")))
    unpacked = unpack_logits(rows, start.numpy(), end.numpy(), lengths, ROW, fill=-10000.0)
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
    unpacked = unpack_logits(rows, start, end, lengths, ROW, fill=-10000.0)
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
    _assert_same_real_logits(unpack_logits(rows, start, end, lengths, ROW, fill=-10000.0), alone, lengths,
                             atol=0.02 * scale)
