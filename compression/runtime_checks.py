"""The verify batch run through each runtime (PyTorch, ONNX Runtime, DeepSparse, OpenVINO), and the check that
OpenVINO runs every quantized Linear of the QDQ form as an 8-bit integer matmul."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.export import OUTPUT_NAMES
from compression.graph_checks import FLOAT_MATMUL_OPS, QDQ_MATMUL_OP, OnnxWeight
from compression.synthetic import INPUT_NAMES
from compression.tolerances import check_result


def run_torch(torch_model, batch) -> dict[str, np.ndarray]:
    was_training = torch_model.training
    torch_model.eval()
    with torch.no_grad():
        output = torch_model(**batch)
    torch_model.train(was_training)
    return {name: getattr(output, name).float().numpy() for name in OUTPUT_NAMES}


def run_ort(onnx_path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), feed)))


def run_deepsparse(onnx_path: Path, feed: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray] | str:
    """DeepSparse outputs, or the reason it cannot run here (a string)."""
    try:
        import deepsparse
    except Exception as exc:  # ImportError, or its native library failing to load on this CPU
        return f"deepsparse cannot be imported: {type(exc).__name__}: {exc}"
    engine = deepsparse.compile_model(str(onnx_path), batch_size=batch_size)
    outputs = engine.run([feed[name] for name in INPUT_NAMES])
    return dict(zip(OUTPUT_NAMES, outputs))


def run_openvino(onnx_path: Path, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Any] | str:
    """OpenVINO outputs (float operations in f32, to compare numerics) and the compiled model, or the reason it
    cannot run here (a string)."""
    try:
        import openvino
    except Exception as exc:  # ImportError, or its native library failing to load on this CPU
        return f"openvino cannot be imported: {type(exc).__name__}: {exc}"
    compiled = openvino.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(feed)
    return {name: results[compiled.output(name)] for name in OUTPUT_NAMES}, compiled


def openvino_int8_check(compiled, weights: dict[str, OnnxWeight], param_names: list[str]) -> dict[str, Any]:
    """Every quantized Linear of the QDQ graph (each recipe parameter among them) runs as an 8-bit matmul.

    A runtime matmul names the ONNX nodes it computes, or what OpenVINO made of them (``<MatMul>/DequantizationMultiply``);
    after some fusions it names only a neighbour (the FFN output Linears after a ReLU are listed under the
    QuantizeLinear before them), and Linears that share their input may run as one. So: no quantized Linear found by
    name may run in float, and no more weight matmuls may run in float than the graph has float Linears.
    """
    from engine_introspection.openvino import INT8_RUNTIME_PRECISIONS, executed_precision, matmul_precisions

    covered = [(precision, name) for precision, names in matmul_precisions(compiled) for name in names]

    def precision_of(node: str) -> str | None:
        return next((precision for precision, name in covered if name == node or name.startswith(node + "/")), None)

    quantized = {name: ref.node_name for name, ref in weights.items() if ref.node_op == QDQ_MATMUL_OP}
    float_linears = sum(1 for ref in weights.values() if ref.node_op in FLOAT_MATMUL_OPS)
    found = {name: precision for name, node in sorted(quantized.items()) if (precision := precision_of(node))}
    in_float = {name: precision for name, precision in found.items() if precision not in INT8_RUNTIME_PRECISIONS}
    missing = [name for name in param_names if name not in quantized]
    executed = executed_precision(compiled)
    float_matmuls = executed["matmul_nodes"] - executed["int8_matmuls"]
    return check_result(bool(quantized) and not in_float and not missing and float_matmuls <= float_linears,
                  quantized_linears=len(quantized), float_linears=float_linears,
                  found_by_name=len(found), not_int8=in_float, float_weight_matmuls=float_matmuls,
                  params_not_quantized=missing, executed=executed)
