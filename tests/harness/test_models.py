"""--model resolution and validation: every bad model gives one clear error before LoadGen starts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.backends import BackendOptions, create_backend
from harness.errors import ConfigError, ModelError
from harness.models import inspect_onnx_model, resolve_model
from tests.onnx_fixtures import toy_expected, write_toy_qa_model


def test_model_directory_with_manifest(tmp_path):
    write_toy_qa_model(tmp_path / "m" / "model.onnx")
    (tmp_path / "m" / "manifest.json").write_text(json.dumps({"name": "toy", "trained": False}))
    info = resolve_model(str(tmp_path / "m"), download_dir=tmp_path / "dl")
    assert info.input_names == {"input_ids": "input_ids", "attention_mask": "attention_mask",
                                "token_type_ids": "token_type_ids"}
    assert (info.start_output, info.end_output) == ("start_logits", "end_logits")
    assert info.sequence_length == 384 and info.batch_size is None
    assert info.trained is False and "UNTRAINED" in info.label


def test_mlperf_reference_input_names_are_accepted(tmp_path):
    path = write_toy_qa_model(
        tmp_path / "ref.onnx", input_names=("input_ids", "input_mask", "segment_ids"),
        output_names=("output_start_logits", "output_end_logits"),
    )
    info = resolve_model(str(path), download_dir=tmp_path)
    assert info.input_names["attention_mask"] == "input_mask"
    assert info.input_names["token_type_ids"] == "segment_ids"
    assert info.start_output == "output_start_logits"


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(ModelError, match="no such file or directory"):
        resolve_model(str(tmp_path / "nope"), download_dir=tmp_path)


def test_directory_without_onnx(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="holds no .onnx file"):
        resolve_model(str(tmp_path / "empty"), download_dir=tmp_path)


def test_not_onnx(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a protobuf")
    with pytest.raises(ModelError, match=r"model.onnx: not a readable ONNX model"):
        inspect_onnx_model(bad)


def test_unexpected_inputs(tmp_path):
    path = write_toy_qa_model(tmp_path / "m.onnx", input_names=("ids", "attention_mask", "token_type_ids"))
    with pytest.raises(ModelError, match=r"unexpected model inputs \['attention_mask', 'ids', 'token_type_ids'\]"):
        inspect_onnx_model(path)


def test_unexpected_outputs(tmp_path):
    path = write_toy_qa_model(tmp_path / "m.onnx", output_names=("logits_a", "logits_b"))
    with pytest.raises(ModelError, match="unexpected model outputs"):
        inspect_onnx_model(path)


def test_hub_id_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="needs internet|need internet|Hugging Face"):
        resolve_model("someorg/some-model-that-is-not-here", download_dir=tmp_path)


def test_zoo_stub_offline_gives_clear_error(tmp_path):
    with pytest.raises(ModelError, match="Zoo stubs need internet"):
        resolve_model("zoo:nlp/question_answering/no-such-model", download_dir=tmp_path)


def test_fixed_batch_model_needs_matching_batch_size(tmp_path):
    info = inspect_onnx_model(write_toy_qa_model(tmp_path / "m.onnx", batch=4, seq_len=16))
    with pytest.raises(ConfigError, match="fixed batch size of 4"):
        create_backend("onnxruntime", info, BackendOptions(batch_size=2))


@pytest.mark.parametrize("backend_name", ["onnxruntime", "deepsparse"])
def test_backend_routes_inputs_and_pads_short_batch(tmp_path, backend_name):
    info = inspect_onnx_model(write_toy_qa_model(tmp_path / "m.onnx", seq_len=16))
    backend = create_backend(backend_name, info, BackendOptions(batch_size=4))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30000, size=(3, 16), dtype=np.int64)  # short batch: 3 of 4
    mask = rng.integers(0, 2, size=(3, 16), dtype=np.int64)
    types = rng.integers(0, 2, size=(3, 16), dtype=np.int64)
    start, end = backend.predict(ids, mask, types)
    want_start, want_end = toy_expected(ids, mask, types)
    assert start.shape == (3, 16) and end.shape == (3, 16)
    np.testing.assert_allclose(start, want_start, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(end, want_end, rtol=1e-6, atol=1e-4)
    backend.close()


def test_model_with_other_sequence_length_is_refused(tmp_path):
    from harness.models import check_model_fits

    info = inspect_onnx_model(write_toy_qa_model(tmp_path / "m.onnx", seq_len=128))
    with pytest.raises(ModelError, match="takes sequences of 128 tokens, but the features are 384-token windows"):
        check_model_fits(info, 384)
    check_model_fits(info, 128)


def test_word_embedding_rows_are_read_from_the_graph(tmp_path):
    assert inspect_onnx_model(write_toy_qa_model(tmp_path / "a.onnx", embedding_rows=123)).embedding_rows == 123
    assert inspect_onnx_model(write_toy_qa_model(tmp_path / "b" / "model.onnx")).embedding_rows is None
    (tmp_path / "b" / "config.json").write_text(json.dumps({"vocab_size": 77}))  # no lookup in the graph: config
    assert inspect_onnx_model(tmp_path / "b" / "model.onnx").embedding_rows == 77


def _vocab(path, entries: int):
    path.write_text("".join(f"tok{i}\n" for i in range(entries)))
    return path


def test_vocab_check_against_the_model(tmp_path):
    from harness.models import check_vocab_fits

    model = inspect_onnx_model(write_toy_qa_model(tmp_path / "m" / "model.onnx", embedding_rows=100))
    assert check_vocab_fits(model, _vocab(tmp_path / "exact.txt", 100))["note"] is None
    with pytest.raises(ModelError, match=r"has 101 entries but the model's word embedding .* has 100 rows"):
        check_vocab_fits(model, _vocab(tmp_path / "long.txt", 101))
    short = check_vocab_fits(model, _vocab(tmp_path / "short.txt", 90))
    assert "90 entries" in short["note"] and short["embedding_rows"] == 100
    assert check_vocab_fits(model, tmp_path / "short.txt", sample=True)["note"] is None  # the sample's own vocab

    # a model that ships its own vocabulary must get exactly that one
    _vocab(tmp_path / "m" / "vocab.txt", 100)
    assert check_vocab_fits(model, tmp_path / "m" / "vocab.txt")["note"] is None
    (tmp_path / "other.txt").write_text("".join(f"other{i}\n" for i in range(100)))
    with pytest.raises(ModelError, match=r"differs from the model's own .*vocab.txt"):
        check_vocab_fits(model, tmp_path / "other.txt")


def test_the_deepsparse_backend_starts_without_importing_torch(tmp_path):
    """Every isolated LoadGen run and Ray actor builds a backend in a fresh process: deepsparse's
    package import would add torch (~2.5 s) to each. torch must stay importable afterwards."""
    import subprocess
    import sys

    model_path = write_toy_qa_model(tmp_path / "m.onnx", seq_len=16)
    script = f"""
import sys
from harness.backends import BackendOptions, create_backend
from harness.models import inspect_onnx_model
from pathlib import Path
backend = create_backend("deepsparse", inspect_onnx_model(Path({str(model_path)!r})), BackendOptions(batch_size=1))
assert "torch" not in sys.modules, "deepsparse brought torch in"
import torch  # still available to the rest of the process
print("ok", torch.__version__)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok ")
