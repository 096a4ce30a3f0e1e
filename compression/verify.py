"""Check an exported model directory end to end and record the result as ``verify.json``.

Checks (each reports ``passed``: true/false, or null when skipped with a ``reason``):

* ``onnx_checker``: the graph loads and passes ``onnx.checker``.
* ``interface``: int64 inputs ``input_ids``/``attention_mask``/``token_type_ids`` and outputs
  ``start_logits``/``end_logits``, all [batch (dynamic), sequence_length].
* ``encoder_layers``: the graph holds exactly the manifest's ``num_layers`` encoder layers.
* ``matmul_ops``: every parameter the recipe prunes is computed by an INT8 matmul (``MatMulInteger`` or
  ``QLinearMatMul``) in an INT8 model, or by a float ``MatMul``/``Gemm`` in an FP32 model. ONNX nodes
  are mapped back to parameters through their scope names (``/mobilebert/encoder/layer.3/ffn.0/
  output/dense/module/MatMul_quant`` -> ``mobilebert.encoder.layer.3.ffn.0.output.dense.weight``).
* ``weight_sparsity``: the zeros survive export: the fraction of all-zero aligned 4-blocks in the ONNX
  weights (INT8: value == zero point) matches the manifest's target within 0.5 percentage points, and,
  given the torch model, every block that is zero there is zero in ONNX. INT8 weights may gain a few
  extra scattered zeros where tiny weights round to the zero point; they are reported, not failed.
* ``ort_vs_torch``: ONNX Runtime logits against the PyTorch model's (when given), on synthetic inputs.
* ``deepsparse_vs_ort``: DeepSparse compiles and runs the model and agrees with ONNX Runtime.
* ``f1_vs_torch``: held-out F1 of the export (ONNX Runtime) within ``F1_TOLERANCE`` of its PyTorch model's on
  the same 384-token windows (when the caller has evaluation windows: the pipeline's trained exports).
* ``openvino_vs_ort``: OpenVINO compiles and runs the file it runs in the harness (``model-qdq.onnx`` for an INT8
  model, ``model.onnx`` otherwise), with its float operations in f32, and agrees with ONNX Runtime on that file.

An INT8 directory also holds the QDQ form (``model-qdq.onnx``, ``compression.qdq``), checked like the integer form:

* ``qdq_matmul_ops`` / ``qdq_weight_sparsity``: every recipe parameter is an integer initializer feeding a
  DequantizeLinear feeding its MatMul, and its 4-block zeros survive in those integers (as above).
* ``qdq_ort_vs_torch``, ``qdq_f1_vs_torch``: as ``ort_vs_torch`` and ``f1_vs_torch``, on the QDQ file.
* ``openvino_int8_matmuls``: in OpenVINO's compiled model (its runtime graph) every quantized Linear of the QDQ
  file runs as an 8-bit integer matmul (runtime precision u8/i8), not decompressed to float.

Logit tolerances bound the largest absolute logit difference, and for INT8 against PyTorch also the mean, by
``atol + rtol * max|reference logit|`` (relative to the logit scale, because untrained logits are only ~0.05
in size while trained ones are ~10). Measured on this 2-core AVX2 CPU, batch of 2 synthetic sequences:

* FP32, ONNX Runtime vs PyTorch: 2e-8 absolute (5e-7 relative): only summation order differs.
  Bound: 1e-5 + 1e-4 relative.
* INT8, ONNX Runtime vs the fake-quant PyTorch model. Single logits of a trained model move by whole
  quantization steps: a float difference of one ulp that flips one 8-bit activation rounding propagates through
  every later layer. On the trained MiniLM (6 layers, 50% oBERT, QAT), three synthetic batches: even the
  unconverted QuantizeLinear/DequantizeLinear graph, the very operations PyTorch's fake quantization runs, is
  3.7-8.2% off at the worst logit (mean 0.40-0.88%); the converted export, which also rounds each Linear bias
  to int32 in units of input scale x weight scale (sparseml's MatMulInteger + int32 Add form, the one DeepSparse
  runs fastest), 8.2-11.3% (mean 1.03-1.26%). A 1.5x scale error planted in one of its Linears: mean 2.2-2.6%,
  worst logit 12-18%. The untrained builds: 0.9-1.2% at the worst logit, mean 0.18-0.25%.
  Bounds: the mean 1e-5 + 2% relative (just catches that planted fault); the largest 1e-5 + 25% relative (a fault
  confined to a few positions). Subtler faults hide in this noise on random tokens (on the untrained
  MobileBERT a 1.5x scale error in one Linear moves nothing past 1.2%); ``f1_vs_torch`` is the check that
  catches them on real text (it caught 78 embedding entries one integer step off: -0.64 F1).
* DeepSparse vs ONNX Runtime, same graph (largest difference): FP32 8e-8 (1.6e-6 relative), bound as FP32
  above; INT8 0.7% on the trained MiniLM (bit-identical on the untrained builds), bound 1e-5 + 2% relative to
  allow for VNNI kernels and fused requantization elsewhere.
* OpenVINO (f32 float operations) vs ONNX Runtime, same graph: INT8 QDQ form of the untrained 14-layer model
  0.9% of the logit scale at the worst logit (mean 0.09%), AVX-512 VNNI, 2026-12-02; bound as DeepSparse's.
  OpenVINO fuses the dequantization scales into its integer kernels and requantizes in another order, so
  single activations round one step apart, as with DeepSparse.
* An INT8 model's numeric floor. Two correct evaluations of one QAT model differ by more than the bounds above
  allow when the model is sensitive to rounding: on the real-accuracy experiment's MiniLM of 2026-12-06 (6 layers,
  50% oBERT, QAT), PyTorch in float64 against PyTorch in float32 -- the same integers and scales -- is 11% off at the
  worst logit of the verify batch (mean 0.8%; 19% / 0.8% on 8 real windows), and its validation F1 moves by 1.34
  points (64.01 -> 62.68); OpenVINO against ONNX Runtime on the same QDQ file was 15% / 0.7%, DeepSparse 2.2%.
  So with a PyTorch model at hand every INT8 logit check is widened to ``FLOAT64_FLOOR_FACTOR`` times that floor
  (float64 vs float32 on the verify batch, recorded as ``numeric_floor``) where that is wider than its bound above;
  the untrained builds' floor is far below their bounds, which then stand as they are. The INT8 engine checks also
  bound the mean at 2% (as ``ort_vs_torch``; measured 0.7% OpenVINO, 0.4% DeepSparse on that MiniLM, 0.09% OpenVINO
  on the untrained 14-layer model), so a scale fault that raises the mean (2.2-2.6% for a 1.5x scale error in one
  Linear, above) still fails where a widened worst-logit bound would let it through.
* F1: ``F1_TOLERANCE`` = 0.5 points, the bound the real-accuracy issue sets between the harness's INT8 F1 and
  the QAT model's (the trained MiniLM's INT8 export: -0.21 on 1,731 questions); on fewer than 400 questions, two
  questions' worth (``f1_bound``). For an INT8 model the PyTorch reference is a range: its F1 evaluated in float32
  and in float64 (``AccuracyCheck.reference_float64``, see the floor above); the export passes within the bound of
  that range.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.errors import VerificationError
from compression.export import MANIFEST_FILE, ONNX_FILE, OUTPUT_NAMES
from compression.qdq import QDQ_ONNX_FILE, constant_values
from compression.quantize import float64_copy
from compression.recipes import canonical_param_name
from compression.sparsity import block4_stats, summarize_block_stats
from compression.synthetic import INPUT_NAMES, synthetic_qa_batch

log = logging.getLogger(__name__)

VERIFY_FILE = "verify.json"
INT8_MATMUL_OPS = ("MatMulInteger", "QLinearMatMul")
FLOAT_MATMUL_OPS = ("MatMul", "Gemm")
QDQ_MATMUL_OP = "DequantizeLinear+MatMul"  # an integer weight dequantized into a float MatMul (the QDQ form)
SPARSITY_TOLERANCE = 0.005  # +-0.5 percentage points of block sparsity


@dataclass(frozen=True)
class Tolerance:
    """Bounds on the absolute logit differences, each ``atol + rtol * max|reference logit|``: on the largest
    (``rtol``) and, when given, on the mean (``mean_rtol``)."""

    atol: float
    rtol: float
    mean_rtol: float | None = None

    def bound(self, reference_scale: float) -> float:
        return self.atol + self.rtol * reference_scale

    def mean_bound(self, reference_scale: float) -> float | None:
        return None if self.mean_rtol is None else self.atol + self.mean_rtol * reference_scale


TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "ort_vs_torch": {"fp32": Tolerance(1e-5, 1e-4), "int8": Tolerance(1e-5, 0.25, mean_rtol=0.02)},
    "deepsparse_vs_ort": {"fp32": Tolerance(1e-5, 1e-4), "int8": Tolerance(1e-5, 0.02, mean_rtol=0.02)},
    "openvino_vs_ort": {"fp32": Tolerance(1e-5, 1e-4), "int8": Tolerance(1e-5, 0.02, mean_rtol=0.02)},
}
F1_TOLERANCE = 0.5  # F1 points between an export and its PyTorch model on the same held-out windows
# On a small evaluation one answer that flips between two near-equal spans moves F1 by up to 100/questions points:
# the bound never goes below two such flips.
F1_TOLERANCE_QUESTIONS = 2


def f1_bound(questions: int, base: float = F1_TOLERANCE) -> float:
    """An F1 bound of ``base`` points (the ``f1_vs_torch`` one by default), widened on an evaluation of ``questions``
    questions to two flipped answers' worth."""
    return max(base, 100.0 * F1_TOLERANCE_QUESTIONS / max(questions, 1))


# How far an INT8 engine may be from another evaluation of the same model, in multiples of how far PyTorch in float32
# is from PyTorch in float64 (the model's numeric floor, module docstring): engines land about as far apart as the two.
FLOAT64_FLOOR_FACTOR = 2.0


def f1_outside_range(f1: float, references: list[float]) -> tuple[float, float, float]:
    """The range of ``references`` (a QAT model's F1 in float32 and float64: see ``FLOAT64_FLOOR_FACTOR``) and how
    far ``f1`` lies outside it (0 inside): ``(low, high, outside)``."""
    low, high = min(references), max(references)
    return low, high, max(low - f1, f1 - high, 0.0)


@dataclass(frozen=True)
class AccuracyCheck:
    """What ``f1_vs_torch`` needs: the PyTorch model's held-out scores (``f1``, ...), a function that scores an
    ONNX file on the same windows and, for a QAT model, its scores evaluated in float64 (the reference is then the
    range between the two)."""

    reference: Mapping[str, Any]
    evaluate: Callable[[Path], Mapping[str, Any]]
    reference_float64: Mapping[str, Any] | None = None


def widened_to_floor(tolerance: Tolerance, floor: Mapping[str, Any] | None) -> Tolerance:
    """``tolerance``, its bounds raised to ``FLOAT64_FLOOR_FACTOR`` times the model's numeric floor where that is
    wider (``floor``: a :func:`compare_logits` result of float64 against float32 PyTorch; None: unchanged)."""
    if not floor or floor.get("relative_max_diff") is None:
        return tolerance
    return replace(tolerance, rtol=max(tolerance.rtol, FLOAT64_FLOOR_FACTOR * floor["relative_max_diff"]),
                   mean_rtol=None if tolerance.mean_rtol is None else
                   max(tolerance.mean_rtol, FLOAT64_FLOOR_FACTOR * floor["relative_mean_diff"]))


VERIFY_BATCH_SIZE = 2
VERIFY_SEED = 1234  # differs from the calibration seeds, so verification sees unseen inputs


@dataclass(frozen=True)
class OnnxWeight:
    """Where a torch Linear weight lives in the ONNX graph."""

    node_op: str
    initializer: str
    zero_point: int | float  # value that represents 0.0 (the INT8 zero point; 0 for float weights)
    transposed: bool  # True when stored [in, out] (MatMul) rather than torch's [out, in]
    node_name: str = ""  # the matmul node computing with it


def _module_from_node_name(node_name: str) -> str | None:
    """``/a/b.0/c/module/MatMul_quant`` -> ``a.b.0.c`` (QuantWrapper ``module`` levels dropped)."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return None
    return ".".join(p for p in parts[:-1] if p != "module")


def onnx_linear_weights(onnx_model) -> dict[str, OnnxWeight]:
    """Map ``<module>.weight`` parameter names to the matmul node and initializer holding them."""
    graph = onnx_model.graph
    initializers = {init.name: init for init in graph.initializer}
    constants = constant_values(graph)
    producers = {output: node for node in graph.node for output in node.output}

    def scalar(name: str) -> int | float:
        return constants[name].reshape(-1)[0].item()

    weights: dict[str, OnnxWeight] = {}
    for node in graph.node:
        module = _module_from_node_name(node.name)
        if module is None:
            continue
        dequantize = producers.get(node.input[1]) if len(node.input) > 1 else None
        if (node.op_type == "MatMul" and dequantize is not None and dequantize.op_type == "DequantizeLinear"
                and dequantize.input[0] in initializers):
            zero_point = scalar(dequantize.input[2]) if len(dequantize.input) > 2 and dequantize.input[2] else 0
            ref = OnnxWeight(QDQ_MATMUL_OP, dequantize.input[0], zero_point, True)
        elif node.op_type == "MatMulInteger" and node.input[1] in initializers:
            zero_point = scalar(node.input[3]) if len(node.input) > 3 and node.input[3] else 0
            ref = OnnxWeight(node.op_type, node.input[1], zero_point, True)
        elif node.op_type == "QLinearMatMul" and node.input[3] in initializers:
            ref = OnnxWeight(node.op_type, node.input[3], scalar(node.input[5]), True)
        elif node.op_type == "MatMul" and node.input[1] in initializers:
            ref = OnnxWeight(node.op_type, node.input[1], 0.0, True)
        elif node.op_type == "Gemm" and node.input[1] in initializers:
            trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
            ref = OnnxWeight(node.op_type, node.input[1], 0.0, not trans_b)
        else:
            continue
        weights[f"{module}.weight"] = replace(ref, node_name=node.name)
    return weights


def _check(passed: bool | None, **details: Any) -> dict[str, Any]:
    return {"passed": passed, **details}


def compare_logits(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                   tolerance: Tolerance) -> dict[str, Any]:
    """A check result: ``candidate``'s start/end logits against ``reference``'s, within ``tolerance``."""
    max_diff = max(float(np.abs(reference[k] - candidate[k]).max()) for k in OUTPUT_NAMES)
    scale = max(float(np.abs(reference[k]).max()) for k in OUTPUT_NAMES)
    mean_diff = float(np.mean([np.abs(reference[k] - candidate[k]).mean() for k in OUTPUT_NAMES]))
    bound, mean_bound = tolerance.bound(scale), tolerance.mean_bound(scale)
    return _check(
        bool(max_diff <= bound and (mean_bound is None or mean_diff <= mean_bound)),
        max_abs_diff=max_diff,
        mean_abs_diff=mean_diff,
        max_abs_reference=scale,
        relative_max_diff=max_diff / scale if scale else None,
        relative_mean_diff=mean_diff / scale if scale else None,
        tolerance={"atol": tolerance.atol, "rtol": tolerance.rtol, "bound": bound, "mean_rtol": tolerance.mean_rtol,
                   "mean_bound": mean_bound},
    )


def _f1_check(onnx_path: Path, accuracy: AccuracyCheck) -> dict[str, Any]:
    """The ONNX file's F1 within the bound of its PyTorch model's (of the range between its float32 and float64
    evaluations when given)."""
    scores = dict(accuracy.evaluate(onnx_path))
    reference = dict(accuracy.reference)
    delta = scores["f1"] - reference["f1"]
    bound = f1_bound(int(scores["questions"]))
    extra: dict[str, Any] = {}
    if accuracy.reference_float64 is not None:
        low, high, outside = f1_outside_range(scores["f1"], [reference["f1"], accuracy.reference_float64["f1"]])
        extra = {"torch_float64": dict(accuracy.reference_float64), "reference_range": [low, high],
                 "outside_range": round(outside, 4)}
    else:
        outside = abs(delta)
    return _check(bool(outside <= bound), f1_difference=round(delta, 4), bound=round(bound, 4), onnx=scores,
                  torch=reference, **extra)


def _interface_check(onnx_model, sequence_length: int | None) -> dict[str, Any]:
    import onnx

    graph = onnx_model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    problems = []
    if [i.name for i in inputs] != list(INPUT_NAMES):
        problems.append(f"inputs {[i.name for i in inputs]} != {list(INPUT_NAMES)}")
    if [o.name for o in graph.output] != list(OUTPUT_NAMES):
        problems.append(f"outputs {[o.name for o in graph.output]} != {list(OUTPUT_NAMES)}")
    shapes = {}
    for value in [*inputs, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        shape = [d.dim_param or d.dim_value for d in dims]
        shapes[value.name] = shape
        if value.name in INPUT_NAMES and value.type.tensor_type.elem_type != onnx.TensorProto.INT64:
            problems.append(f"{value.name} is not int64")
        if len(dims) != 2 or not dims[0].dim_param or (sequence_length and dims[1].dim_value != sequence_length):
            problems.append(f"{value.name} has shape {shape}, expected [batch, {sequence_length}]")
    return _check(not problems, shapes=shapes, problems=problems)


def _layers_check(onnx_model, expected: int | None) -> dict[str, Any]:
    found = {int(m[1]) for n in onnx_model.graph.node if (m := re.search(r"/encoder/layer\.(\d+)/", n.name))}
    count = len(found)
    contiguous = found == set(range(count))
    return _check(expected is not None and count == expected and contiguous, found=count, expected=expected)


def _matmul_check(weights: dict[str, OnnxWeight], param_names: list[str], wanted: tuple[str, ...]) -> dict[str, Any]:
    missing = [name for name in param_names if name not in weights]
    wrong = {name: weights[name].node_op for name in param_names if name in weights and weights[name].node_op not in wanted}
    ops = Counter(weights[name].node_op for name in param_names if name in weights)
    return _check(
        bool(param_names) and not missing and not wrong,
        expected_ops=list(wanted),
        checked_params=len(param_names),
        ops_for_listed_params=dict(ops),
        params_not_found=missing,
        params_with_wrong_op=wrong,
    )


def _sparsity_check(
    onnx_model, weights: dict[str, OnnxWeight], param_names: list[str], target: float | None, torch_model
) -> dict[str, Any]:
    from onnx import numpy_helper

    initializers = {init.name: init for init in onnx_model.graph.initializer}
    torch_params = {canonical_param_name(n): p for n, p in torch_model.named_parameters()} if torch_model else {}
    per_param: dict[str, dict[str, Any]] = {}
    lost_zero_blocks = 0
    for name in param_names:
        ref = weights.get(name)
        if ref is None:
            continue
        array = numpy_helper.to_array(initializers[ref.initializer])
        out_in = array.T if ref.transposed else array
        per_param[name] = block4_stats(out_in, zero_value=ref.zero_point)
        if name in torch_params:
            torch_weight = torch_params[name].detach().cpu().numpy()
            if torch_weight.shape != out_in.shape:
                per_param[name]["shape_mismatch"] = [list(torch_weight.shape), list(out_in.shape)]
                lost_zero_blocks += 1
                continue
            torch_zero = (torch_weight == 0).reshape(-1, 4).all(axis=1)
            onnx_zero = (out_in == ref.zero_point).reshape(-1, 4).all(axis=1)
            lost_zero_blocks += int((torch_zero & ~onnx_zero).sum())
    summary = summarize_block_stats(per_param)
    problems = []
    if len(per_param) != len(param_names):
        problems.append(f"only {len(per_param)} of {len(param_names)} listed weights found in the graph")
    if target is None:
        problems.append("the manifest has no sparsity target")
    elif abs(summary["block_sparsity"] - target) > SPARSITY_TOLERANCE:
        problems.append(f"block sparsity {summary['block_sparsity']:.4f} is not within {SPARSITY_TOLERANCE} of {target}")
    if torch_model is not None and lost_zero_blocks:
        problems.append(f"{lost_zero_blocks} zero blocks of the torch model are not zero in the ONNX weights")
    return _check(
        not problems,
        target=target,
        block_sparsity=summary["block_sparsity"],
        element_sparsity=summary["global_sparsity"],
        zero_blocks=summary["zero_blocks"],
        total_blocks=summary["total_blocks"],
        zeros_outside_zero_blocks=summary["zeros_outside_zero_blocks"],
        torch_zero_blocks_lost=lost_zero_blocks if torch_model is not None else None,
        problems=problems,
    )


def sparsity_summary(onnx_model, weights: dict[str, OnnxWeight], param_names: list[str]) -> dict[str, Any]:
    """Zeros in the exported file: over the recipe's matrices (the encoder Linears it prunes) and over every parameter
    of the model (embedding tables, heads, biases and norms included). A quantized tensor's zero is its zero point
    (read from the DequantizeLinear / MatMulInteger that consumes it)."""
    from onnx import numpy_helper

    graph = onnx_model.graph
    constants = constant_values(graph)
    producers = {output: node for node in graph.node for output in node.output}
    zero_of: dict[str, float] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) > 2 and node.input[2] in constants:
            source = producers.get(node.input[0])
            # sparseml's quantized embeddings gather integer rows first and dequantize them after
            table = source.input[0] if source is not None and source.op_type == "Gather" else node.input[0]
            zero_of[table] = constants[node.input[2]].reshape(-1)[0].item()
        elif node.op_type == "MatMulInteger" and len(node.input) > 3 and node.input[3] in constants:
            zero_of[node.input[1]] = constants[node.input[3]].reshape(-1)[0].item()
    listed = {weights[name].initializer for name in param_names if name in weights}
    totals = {"encoder_linear": [0, 0], "model": [0, 0]}
    for init in graph.initializer:
        if init.data_type == 7:  # int64: shapes and indices, not parameters
            continue
        array = numpy_helper.to_array(init)
        if array.size < 2:  # scalars: scales, zero points, constants
            continue
        zeros = int((array == zero_of.get(init.name, 0)).sum())
        for key in ("model",) + (("encoder_linear",) if init.name in listed else ()):
            totals[key][0] += zeros
            totals[key][1] += int(array.size)
    return {key: {"zeros": zeros, "parameters": size, "sparsity": round(zeros / size, 6) if size else None}
            for key, (zeros, size) in totals.items()}


def _run_torch(torch_model, batch) -> dict[str, np.ndarray]:
    was_training = torch_model.training
    torch_model.eval()
    with torch.no_grad():
        output = torch_model(**batch)
    torch_model.train(was_training)
    return {name: getattr(output, name).float().numpy() for name in OUTPUT_NAMES}


def _run_ort(onnx_path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), feed)))


def _run_deepsparse(onnx_path: Path, feed: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray] | str:
    """DeepSparse outputs, or the reason it cannot run here (a string)."""
    try:
        import deepsparse
    except Exception as exc:  # ImportError, or its native library failing to load on this CPU
        return f"deepsparse cannot be imported: {type(exc).__name__}: {exc}"
    engine = deepsparse.compile_model(str(onnx_path), batch_size=batch_size)
    outputs = engine.run([feed[name] for name in INPUT_NAMES])
    return dict(zip(OUTPUT_NAMES, outputs))


def _run_openvino(onnx_path: Path, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Any] | str:
    """OpenVINO outputs (float operations in f32, to compare numerics) and the compiled model, or the reason it
    cannot run here (a string)."""
    try:
        import openvino
    except Exception as exc:  # ImportError, or its native library failing to load on this CPU
        return f"openvino cannot be imported: {type(exc).__name__}: {exc}"
    compiled = openvino.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(feed)
    return {name: results[compiled.output(name)] for name in OUTPUT_NAMES}, compiled


def _openvino_int8_check(compiled, weights: dict[str, OnnxWeight], param_names: list[str]) -> dict[str, Any]:
    """Every quantized Linear of the QDQ graph (each recipe parameter among them) runs as an 8-bit matmul.

    A runtime matmul names the ONNX nodes it computes, or what OpenVINO made of them (``<MatMul>/DequantizationMultiply``);
    after some fusions it names only a neighbour (the FFN output Linears after a ReLU are listed under the
    QuantizeLinear before them), and Linears that share their input may run as one. So: no quantized Linear found by
    name may run in float, and no more weight matmuls may run in float than the graph has float Linears.
    """
    from engines.openvino import INT8_RUNTIME_PRECISIONS, executed_precision, matmul_precisions

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
    return _check(bool(quantized) and not in_float and not missing and float_matmuls <= float_linears,
                  quantized_linears=len(quantized), float_linears=float_linears,
                  found_by_name=len(found), not_int8=in_float, float_weight_matmuls=float_matmuls,
                  params_not_quantized=missing, executed=executed)


def verify_model_dir(
    model_dir: Path,
    torch_model: torch.nn.Module | None = None,
    *,
    raise_on_failure: bool = False,
    write: bool = True,
    check_deepsparse: bool = True,
    check_openvino: bool = True,
    published_as: Path | None = None,
    accuracy: AccuracyCheck | None = None,
) -> dict[str, Any]:
    """Run all checks on ``model_dir``; write ``verify.json`` there and return the same dict.

    ``torch_model`` is the PyTorch model the directory was exported from (for an INT8 export: the
    QAT model with frozen observers). Without it the ``ort_vs_torch`` check is skipped; without ``accuracy``
    the ``f1_vs_torch`` check is.
    ``published_as`` is the final directory when ``model_dir`` is a staging copy (recorded in the result).
    """
    import onnx

    started = time.perf_counter()
    model_dir = Path(model_dir)
    onnx_path = model_dir / ONNX_FILE
    manifest_path = model_dir / MANIFEST_FILE
    if not onnx_path.is_file():
        raise VerificationError(f"{model_dir}: no {ONNX_FILE} to verify")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    precision = manifest.get("precision", "fp32")
    sequence_length = manifest.get("sequence_length")
    details = manifest.get("sparsity_details") or {}
    param_names = list(details.get("params", []))

    checks: dict[str, dict[str, Any]] = {}
    try:
        onnx.checker.check_model(str(onnx_path))
        checks["onnx_checker"] = _check(True)
    except Exception as exc:  # onnx raises ValidationError, DecodeError, ...
        checks["onnx_checker"] = _check(False, error=f"{type(exc).__name__}: {exc}")
    onnx_model = onnx.load(str(onnx_path))
    op_types = dict(sorted(Counter(node.op_type for node in onnx_model.graph.node).items()))
    weights = onnx_linear_weights(onnx_model)

    checks["interface"] = _interface_check(onnx_model, sequence_length)
    checks["encoder_layers"] = _layers_check(onnx_model, manifest.get("num_layers"))
    if param_names:
        checks["matmul_ops"] = _matmul_check(weights, param_names,
                                             INT8_MATMUL_OPS if precision == "int8" else FLOAT_MATMUL_OPS)
        checks["weight_sparsity"] = _sparsity_check(onnx_model, weights, param_names, details.get("target"), torch_model)
    else:
        reason = "the manifest lists no recipe parameters (sparsity_details.params)"
        checks["matmul_ops"] = _check(None, reason=reason)
        checks["weight_sparsity"] = _check(None, reason=reason)

    config_path = model_dir / "config.json"
    vocab_size = json.loads(config_path.read_text()).get("vocab_size", 30522) if config_path.is_file() else 30522
    batch = synthetic_qa_batch(VERIFY_BATCH_SIZE, sequence_length or 384, vocab_size=vocab_size, seed=VERIFY_SEED)
    feed = {name: tensor.numpy() for name, tensor in batch.items()}
    ort_outputs = _run_ort(onnx_path, feed)
    torch_outputs = _run_torch(torch_model, batch) if torch_model is not None else None
    floor = None
    if torch_outputs is not None and precision == "int8":
        floor = {**compare_logits(_run_torch(float64_copy(torch_model), batch), torch_outputs, Tolerance(0.0, 0.0)),
                 "compared": "the PyTorch model in float64 against float32, verify batch"}
        del floor["passed"], floor["tolerance"]
        log.info("numeric floor of the INT8 model (PyTorch float64 vs float32): worst logit %.1f%%, mean %.2f%% of the "
                 "logit scale", 100 * (floor["relative_max_diff"] or 0), 100 * (floor["relative_mean_diff"] or 0))

    def tolerance(check: str) -> Tolerance:
        return widened_to_floor(TOLERANCES[check][precision], floor)

    if torch_outputs is not None:
        checks["ort_vs_torch"] = compare_logits(torch_outputs, ort_outputs, tolerance("ort_vs_torch"))
    else:
        checks["ort_vs_torch"] = _check(None, reason="no PyTorch model given")
    if check_deepsparse:
        ds_outputs = _run_deepsparse(onnx_path, feed, VERIFY_BATCH_SIZE)
        if isinstance(ds_outputs, str):
            checks["deepsparse_vs_ort"] = _check(None, reason=ds_outputs)
        else:
            checks["deepsparse_vs_ort"] = compare_logits(ort_outputs, ds_outputs, tolerance("deepsparse_vs_ort"))
    else:
        checks["deepsparse_vs_ort"] = _check(None, reason="disabled by the caller")
    if accuracy is not None:
        checks["f1_vs_torch"] = _f1_check(onnx_path, accuracy)
    else:
        checks["f1_vs_torch"] = _check(None, reason="no held-out evaluation windows given")

    qdq_spec = manifest.get("qdq")
    qdq_path = model_dir / qdq_spec["onnx_file"] if qdq_spec else None
    openvino_path, openvino_reference, qdq_weights = onnx_path, ort_outputs, {}
    if precision == "int8" and qdq_path is None:
        checks["qdq_form"] = _check(False, problems=["the manifest names no QDQ form of this INT8 model (qdq.onnx_file)"])
    elif qdq_path is not None:
        qdq_checks, openvino_reference, qdq_weights = _qdq_checks(
            qdq_path, param_names, details.get("target"), torch_model, torch_outputs, feed, accuracy,
            tolerance("ort_vs_torch"))
        checks.update(qdq_checks)
        openvino_path = qdq_path
    if not check_openvino:
        checks["openvino_vs_ort"] = _check(None, reason="disabled by the caller")
    elif openvino_reference is not None:
        ov_run = _run_openvino(openvino_path, feed)
        if isinstance(ov_run, str):
            checks["openvino_vs_ort"] = _check(None, reason=ov_run)
        else:
            ov_outputs, compiled = ov_run
            checks["openvino_vs_ort"] = {**compare_logits(openvino_reference, ov_outputs, tolerance("openvino_vs_ort")),
                                         "onnx_file": openvino_path.name}
            if openvino_path == qdq_path:
                checks["openvino_int8_matmuls"] = _openvino_int8_check(compiled, qdq_weights, param_names)

    failed = [name for name, check in checks.items() if check["passed"] is False]
    result = {
        "model": manifest.get("name"),
        "model_dir": str(published_as or model_dir),
        "passed": not failed,
        "failed_checks": failed,
        "precision": precision,
        "trained": manifest.get("trained"),
        "checks": checks,
        "numeric_floor": floor,
        "sparsity": sparsity_summary(onnx_model, weights, param_names),
        "onnx_op_types": op_types,
        "duration_s": round(time.perf_counter() - started, 2),
    }
    if write:
        (model_dir / VERIFY_FILE).write_text(json.dumps(result, indent=2) + "\n")
    for name, check in checks.items():
        status = {True: "ok", False: "FAILED", None: "skipped"}[check["passed"]]
        log.info("verify %-18s %s%s", name, status, f" ({check['reason']})" if check.get("reason") else "")
    if failed and raise_on_failure:
        report = model_dir / VERIFY_FILE
        if published_as is not None:  # a staging copy, deleted when publishing is vetoed: keep the report beside it
            report = failed_verification_report(Path(published_as))
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(result, indent=2) + "\n")
        target = published_as or model_dir
        raise VerificationError(f"{target}: verification failed ({', '.join(failed)}), not published; see {report}")
    if published_as is not None and not failed:  # an earlier failure's report no longer describes the target
        failed_verification_report(Path(published_as)).unlink(missing_ok=True)
    return result


def _qdq_checks(qdq_path: Path, param_names: list[str], target: float | None, torch_model,
                torch_outputs: dict[str, np.ndarray] | None, feed: dict[str, np.ndarray], accuracy: AccuracyCheck | None,
                torch_tolerance: Tolerance) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray] | None, dict[str, OnnxWeight]]:
    """The checks of the QDQ form (module docstring), prefixed ``qdq_``; also its ONNX Runtime logits on ``feed``
    and its weights (None and {} when the file is missing)."""
    import onnx

    if not qdq_path.is_file():
        return {"qdq_form": _check(False, problems=[f"{qdq_path.name} is named by the manifest but missing"])}, None, {}
    checks: dict[str, dict[str, Any]] = {}
    try:
        onnx.checker.check_model(str(qdq_path))
        checks["qdq_onnx_checker"] = _check(True)
    except Exception as exc:
        checks["qdq_onnx_checker"] = _check(False, error=f"{type(exc).__name__}: {exc}")
    qdq_model = onnx.load(str(qdq_path))
    weights = onnx_linear_weights(qdq_model)
    checks["qdq_interface"] = _interface_check(qdq_model, feed["input_ids"].shape[1])
    if param_names:
        checks["qdq_matmul_ops"] = _matmul_check(weights, param_names, (QDQ_MATMUL_OP,))
        checks["qdq_weight_sparsity"] = _sparsity_check(qdq_model, weights, param_names, target, torch_model)
    outputs = _run_ort(qdq_path, feed)
    if torch_outputs is not None:
        checks["qdq_ort_vs_torch"] = compare_logits(torch_outputs, outputs, torch_tolerance)
    else:
        checks["qdq_ort_vs_torch"] = _check(None, reason="no PyTorch model given")
    if accuracy is not None:
        checks["qdq_f1_vs_torch"] = _f1_check(qdq_path, accuracy)
    return checks, outputs, weights


def failed_verification_report(published_as: Path) -> Path:
    """Where the report of a vetoed export is kept: beside the directory it would have been published as."""
    return published_as.with_name(f"{published_as.name}.verify-failed.json")
