"""Small hand-built ONNX graphs with a QA model's interface, for validation and backend tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_toy_qa_model(
    path: Path,
    *,
    input_names: tuple[str, str, str] = ("input_ids", "attention_mask", "token_type_ids"),
    output_names: tuple[str, str] = ("start_logits", "end_logits"),
    seq_len: int | str = 384,
    batch: int | str = "batch",
    embedding_rows: int | None = None,
) -> Path:
    """start = ids * 0.01 + mask, end = ids * -0.01 + type ids (float32): cheap, deterministic, and
    sensitive to every input, so input routing mistakes show up in the outputs. With ``embedding_rows``
    the ids also index a zero word-embedding table of that many rows (added to start), so an id past the
    table fails in the engine, as it does in a real model."""
    import onnx
    from onnx import TensorProto, helper

    ids, mask, types = input_names
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, [batch, seq_len]) for n in input_names]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, seq_len]) for n in output_names]
    nodes = [
        helper.make_node("Cast", [ids], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", [mask], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", [types], ["types_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "scale_pos"], ["ids_pos"]),
        helper.make_node("Mul", ["ids_f", "scale_neg"], ["ids_neg"]),
        helper.make_node("Add", ["ids_pos", "mask_f"], [output_names[0]]),
        helper.make_node("Add", ["ids_neg", "types_f"], [output_names[1]]),
    ]
    initializers = [
        helper.make_tensor("scale_pos", TensorProto.FLOAT, [], [0.01]),
        helper.make_tensor("scale_neg", TensorProto.FLOAT, [], [-0.01]),
    ]
    if embedding_rows is not None:
        nodes[5] = helper.make_node("Add", ["ids_pos", "mask_f"], ["start_raw"])
        nodes += [
            helper.make_node("Gather", ["word_embeddings", ids], ["embedded"]),
            helper.make_node("ReduceSum", ["embedded", "last_axis"], ["embedded_sum"], keepdims=0),
            helper.make_node("Add", ["start_raw", "embedded_sum"], [output_names[0]]),
        ]
        initializers += [
            helper.make_tensor("word_embeddings", TensorProto.FLOAT, [embedding_rows, 2], [0.0] * (2 * embedding_rows)),
            helper.make_tensor("last_axis", TensorProto.INT64, [1], [-1]),
        ]
    graph = helper.make_graph(nodes, "toy_qa", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def toy_expected(ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids_f = ids.astype(np.float32)
    return ids_f * np.float32(0.01) + mask, ids_f * np.float32(-0.01) + types


def write_toy_packed_variant(model_path: Path, seq_len: int = 384) -> Path:
    """The packed-input twin of :func:`write_toy_qa_model` (default names) beside it, as ``model-packed.onnx``,
    named by a ``manifest.json`` there: on real tokens (window id > 0, where the plain model's mask is 1) it
    computes what the plain toy computes, token by token."""
    import json

    import onnx
    from onnx import TensorProto, helper

    names = ("input_ids", "window_ids", "token_type_ids", "position_ids")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", seq_len]) for n in names]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", seq_len]) for n in ("start_logits", "end_logits")]
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Greater", ["window_ids", "zero"], ["real"]),
        helper.make_node("Cast", ["real"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["types_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["position_ids"], ["positions_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["positions_f", "nothing"], ["positions_0"]),  # every input is used
        helper.make_node("Mul", ["ids_f", "scale_pos"], ["ids_pos"]),
        helper.make_node("Mul", ["ids_f", "scale_neg"], ["ids_neg"]),
        helper.make_node("Add", ["ids_pos", "mask_f"], ["start_raw"]),
        helper.make_node("Add", ["start_raw", "positions_0"], ["start_logits"]),
        helper.make_node("Add", ["ids_neg", "types_f"], ["end_logits"]),
    ]
    initializers = [helper.make_tensor("scale_pos", TensorProto.FLOAT, [], [0.01]),
                    helper.make_tensor("scale_neg", TensorProto.FLOAT, [], [-0.01]),
                    helper.make_tensor("nothing", TensorProto.FLOAT, [], [0.0]),
                    helper.make_tensor("zero", TensorProto.INT64, [], [0])]
    model = helper.make_model(helper.make_graph(nodes, "toy_qa_packed", inputs, outputs, initializers),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(model_path).parent / "model-packed.onnx"
    onnx.save(model, str(path))
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest["packed"] = {"onnx_file": path.name, "input_names": list(names), "row_length": seq_len}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
