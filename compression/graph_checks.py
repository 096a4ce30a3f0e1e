"""Checks of an exported ONNX graph's structure and weights: its interface, its encoder layers, the matmul each pruned
parameter runs in, and whether the 4-block zeros survived export."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from compression.export import OUTPUT_NAMES
from compression.qdq import constant_values
from compression.recipes import canonical_param_name
from compression.sparsity import block4_stats, summarize_block_stats
from compression.synthetic import INPUT_NAMES
from compression.tolerances import SPARSITY_TOLERANCE, check_result

INT8_MATMUL_OPS = ("MatMulInteger", "QLinearMatMul")
FLOAT_MATMUL_OPS = ("MatMul", "Gemm")
QDQ_MATMUL_OP = "DequantizeLinear+MatMul"  # an integer weight dequantized into a float MatMul (the QDQ form)


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
        # the QDQ form keeps torch's [out, in] layout behind a Transpose (compression.qdq)
        transpose = dequantize if dequantize is not None and dequantize.op_type == "Transpose" else None
        if transpose is not None:
            dequantize = producers.get(transpose.input[0])
        if (node.op_type == "MatMul" and dequantize is not None and dequantize.op_type == "DequantizeLinear"
                and dequantize.input[0] in initializers):
            zero_point = scalar(dequantize.input[2]) if len(dequantize.input) > 2 and dequantize.input[2] else 0
            ref = OnnxWeight(QDQ_MATMUL_OP, dequantize.input[0], zero_point, transpose is None)
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


def interface_check(onnx_model, sequence_length: int | None) -> dict[str, Any]:
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
    return check_result(not problems, shapes=shapes, problems=problems)


def layers_check(onnx_model, expected: int | None) -> dict[str, Any]:
    found = {int(m[1]) for n in onnx_model.graph.node if (m := re.search(r"/encoder/layer\.(\d+)/", n.name))}
    count = len(found)
    contiguous = found == set(range(count))
    return check_result(expected is not None and count == expected and contiguous, found=count, expected=expected)


def matmul_check(weights: dict[str, OnnxWeight], param_names: list[str], wanted: tuple[str, ...]) -> dict[str, Any]:
    missing = [name for name in param_names if name not in weights]
    wrong = {name: weights[name].node_op for name in param_names if name in weights and weights[name].node_op not in wanted}
    ops = Counter(weights[name].node_op for name in param_names if name in weights)
    return check_result(
        bool(param_names) and not missing and not wrong,
        expected_ops=list(wanted),
        checked_params=len(param_names),
        ops_for_listed_params=dict(ops),
        params_not_found=missing,
        params_with_wrong_op=wrong,
    )


def sparsity_check(
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
    return check_result(
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
