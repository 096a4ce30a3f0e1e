"""The two ONNX forms of an INT8 (QAT) export, both made from one traced graph.

Tracing a fake-quantized model gives a QuantizeLinear/DequantizeLinear ("QDQ") graph: every quantized
weight is a float initializer passed through a QuantizeLinear/DequantizeLinear pair (and, for a Linear, a
Transpose), every quantized activation likewise. From it:

* the **integer form** (``model.onnx``): sparseml's ``ONNXToDeepsparse`` conversion, ``MatMulInteger`` + int32
  bias + rescale, the form DeepSparse runs fastest and Neural Magic ships (``convert_qat=True`` in sparseml's
  exporter is exactly this pass on the same graph);
* the **QDQ form** (``model-qdq.onnx``): the quantized weights stored as int8 initializers (the QAT model's own
  integers, scales and zero points) feeding DequantizeLinear, the activations' QuantizeLinear/DequantizeLinear
  pairs kept. This is the standard ONNX representation of a quantized model that OpenVINO's low-precision
  transformations and ONNX Runtime's QDQ fusions recognise and run on their INT8 kernels; neither recognises
  sparseml's MatMulInteger form (OpenVINO decompresses it to float and runs it several times slower:
  docs/compression.md, "Verification").

A Linear's weight keeps torch's ``[out, in]`` layout, followed by the traced Transpose: OpenVINO folds that
Transpose into its ``FullyConnected``, which then reads the int8 weights straight from a constant, the condition of
its sparse-weight kernels (``CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE``). Stored pre-transposed (``[in, out]`` feeding
the MatMul) the weights reached each FullyConnected through a Transpose node and those kernels never engaged; the
two layouts give bit-identical outputs in both engines (docs/running.md, Which engine).

Neither onnx nor sparseml folds a weight's QuantizeLinear into an integer initializer while keeping its
DequantizeLinear (sparseml's passes fold it only into the integer ops), hence :func:`fold_weight_quantization`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QDQ_ONNX_FILE = "model-qdq.onnx"


@dataclass(frozen=True)
class QdqFolding:
    """What :func:`fold_weight_quantization` changed."""

    weights_folded: int  # QuantizeLinear nodes of weights replaced by integer initializers


def constant_values(graph) -> dict:
    """Every constant of a graph by name, as numpy arrays: its initializers and the outputs of its Constant nodes."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _quantize(weight: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear on a constant: round half to even, add the zero point, saturate to its type."""
    if scale.size > 1:  # per-channel: broadcast along ``axis``
        shape = [1] * weight.ndim
        shape[axis] = scale.size
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    integers = np.rint(weight.astype(np.float32) / scale.astype(np.float32)) + zero_point.astype(np.int64)
    return np.clip(integers, info.min, info.max).astype(zero_point.dtype)


def _axis(node, default: int = 1) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), default)


def fold_weight_quantization(model) -> QdqFolding:
    """Rewrite a traced QDQ graph in place into the QDQ form (module docstring).

    Each QuantizeLinear whose input, scale and zero point are constants and whose only consumer is a
    DequantizeLinear becomes an integer initializer feeding that DequantizeLinear, in the weight's own layout (a
    Linear's Transpose stays after the DequantizeLinear: see the module docstring). Unused initializers are dropped.
    """
    from onnx import numpy_helper

    graph = model.graph
    constants = constant_values(graph)
    initializers = {init.name for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    dropped, added = [], []
    stored: dict[tuple, str] = {}  # one integer initializer per (weight, quantization), however often traced
    folded = 0
    for quantize in list(graph.node):
        if quantize.op_type != "QuantizeLinear" or quantize.input[0] not in initializers or len(quantize.input) < 3:
            continue
        scale, zero_point = constants.get(quantize.input[1]), constants.get(quantize.input[2])
        users = consumers.get(quantize.output[0], [])
        if scale is None or zero_point is None or len(users) != 1 or users[0].op_type != "DequantizeLinear":
            continue
        dequantize = users[0]
        integers = _quantize(constants[quantize.input[0]], scale, zero_point, _axis(quantize))
        key = (quantize.input[0], scale.tobytes(), zero_point.tobytes())
        if key not in stored:
            stored[key] = f"{quantize.input[0]}_quantized"
            if any(init.name == stored[key] for init in added):  # the same weight under another quantization
                stored[key] += f"_{len(stored)}"
            added.append(numpy_helper.from_array(integers, stored[key]))
        dequantize.input[0] = stored[key]
        dropped.append(quantize)
        folded += 1
    for node in dropped:
        graph.node.remove(node)
    graph.initializer.extend(added)
    used = {name for node in graph.node for name in node.input} | graph_outputs
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)
    return QdqFolding(folded)


def to_integer_form(model):
    """sparseml's conversion of a traced QDQ graph to DeepSparse's INT8 operators (returns a new model)."""
    from sparseml.exporters.onnx_to_deepsparse import ONNXToDeepsparse

    return ONNXToDeepsparse(inplace=False).apply(model)
