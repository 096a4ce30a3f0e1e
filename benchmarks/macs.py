"""Multiply-accumulates per window, and the machine's INT8 peak, for the roofline fraction.

MACs come from the model itself: every MatMul-like node is made a graph output and the model is run
once in ONNX Runtime at two sequence lengths, which gives each node's exact operand shapes. A node whose
weight is an initializer counts only the weight's non-zeros (pruned weights need no multiply; DeepSparse
skips them), activation-by-activation products (attention) count in full. MACs(L) = a*L + b*L^2 exactly
(linear layers per token, attention per token pair), so two lengths determine it for any length.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.models import ModelInfo

MATMUL_OPS = ("MatMul", "MatMulInteger", "Gemm", "QLinearMatMul")


@dataclass(frozen=True)
class MacProfile:
    """MACs of one window of ``length`` tokens: ``linear * length + attention * length**2``."""

    int8: bool  # the matmuls run in INT8 (MatMulInteger / QLinearMatMul)
    linear_dense: float  # per token, all weights
    linear_effective: float  # per token, non-zero weights only
    attention: float  # per token pair (activation x activation products)

    def effective(self, length: int | np.ndarray) -> np.ndarray:
        length = np.asarray(length, dtype=np.float64)
        return self.linear_effective * length + self.attention * length**2

    def dense(self, length: int | np.ndarray) -> np.ndarray:
        length = np.asarray(length, dtype=np.float64)
        return self.linear_dense * length + self.attention * length**2


def count_macs(model: ModelInfo, lengths: tuple[int, int] = (64, 128)) -> MacProfile:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    proto = onnx.load(str(model.onnx_path))
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in MATMUL_OPS]
    # Weight operand (B) of each node, or None for activation x activation products.
    weight_density: dict[int, tuple[int, float] | None] = {}  # by node position (names may be empty)
    for position, node in enumerate(nodes):
        b, zero_point = {"QLinearMatMul": (3, 5), "MatMulInteger": (1, 3)}.get(node.op_type, (1, None))
        b = node.input[b]
        if b in initializers:
            array = numpy_helper.to_array(initializers[b])
            # A quantized weight is "zero" where it equals its zero point (sparseml exports uint8, zp 128).
            zp_name = node.input[zero_point] if zero_point is not None and len(node.input) > zero_point else None
            zero = numpy_helper.to_array(initializers[zp_name]) if zp_name in initializers else 0
            density = float(np.count_nonzero(array != zero)) / array.size
            weight_density[position] = (int(array.size), density)
        else:
            weight_density[position] = None
    probe = {n.input[0] for n in nodes} | {n.output[0] for n in nodes}
    existing = {o.name for o in graph.output}
    for name in sorted(probe - existing):
        graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.name in existing and len(dims) == 2:
            dims[1].Clear()
            dims[1].dim_param = "sequence"
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 2:
            dims[1].Clear()
            dims[1].dim_param = "sequence"
    del graph.value_info[:]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep node outputs
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]

    totals = []
    for length in lengths:
        batch = model.batch_size or 1
        feeds = {name: np.ones((batch, length), dtype=np.int64) for name in model.input_names.values()}
        values = dict(zip(output_names, session.run(output_names, feeds)))
        dense = effective = attention = 0.0
        for position, node in enumerate(nodes):
            a, out = values[node.input[0]], values[node.output[0]]
            k = a.shape[-1]
            macs = float(np.prod(out.shape)) * k / batch
            density = weight_density[position]
            if density is None:
                attention += macs
            else:
                dense += macs
                effective += macs * density[1]
        totals.append((length, dense, effective, attention))
    (l1, d1, e1, a1), (l2, d2, e2, a2) = totals
    # Linear MACs scale with L, attention with L^2: solve from the two lengths.
    attention_pair = (a2 / l2 - a1 / l1) / (l2 - l1) if l2 != l1 else 0.0
    int8 = any(n.op_type in ("MatMulInteger", "QLinearMatMul") for n in nodes)
    return MacProfile(int8=int8, linear_dense=d1 / l1, linear_effective=e1 / l1, attention=max(attention_pair, 0.0))


@dataclass(frozen=True)
class ComputePeak:
    """Peak MAC/s of this CPU from its ISA, core count and clock: an upper bound, not a measurement."""

    int8_macs_per_s: float
    fp32_macs_per_s: float
    how: str

    def for_precision(self, int8: bool) -> float:
        return self.int8_macs_per_s if int8 else self.fp32_macs_per_s


def compute_peak(cores: int | None = None) -> ComputePeak:
    """Per core per cycle, two SIMD multiply-add issues: INT8 AVX-512 (VNNI or vpmaddubsw) 2 x 64 MACs,
    AVX2 2 x 32 (widening adds of the non-VNNI sequence not counted, so the bound is generous); FP32
    FMA AVX-512 2 x 16, AVX2 2 x 8. The clock is the highest ``cpu MHz`` in /proc/cpuinfo."""
    flags, mhz, model = set(), None, "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split())
        model = re.search(r"^model name\s*:\s*(.*)$", text, re.M).group(1).strip()
        mhz = max(float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)$", text, re.M))
    except (OSError, AttributeError, ValueError):
        pass
    cores = cores or os.cpu_count() or 1
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    if "avx512bw" in flags:
        int8, fp32, isa = 128, 32, "AVX-512" + (" VNNI" if vnni else " without VNNI")
    elif "avx2" in flags:
        int8, fp32, isa = 64, 16, "AVX2" + (" VNNI" if vnni else " without VNNI")
    else:
        int8, fp32, isa = 16, 4, "SSE"
    ghz = (mhz or 2000.0) / 1000.0
    cycles = cores * ghz * 1e9
    return ComputePeak(
        int8_macs_per_s=cycles * int8, fp32_macs_per_s=cycles * fp32,
        how=(f"{cores} cores x {ghz:.2f} GHz ({'/proc/cpuinfo' if mhz else 'assumed'}) x {int8} INT8 / {fp32} FP32 "
             f"MACs per cycle per core ({isa}: two {256 if int8 == 64 else 512}-bit multiply-add issues per cycle); "
             f"{model}"),
    )
