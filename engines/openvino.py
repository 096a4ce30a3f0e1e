"""What an OpenVINO compiled model actually executes, read from its runtime (execution) graph.

OpenVINO decides per operation which precision it runs: a quantized (QDQ) MatMul becomes an INT8
``FullyConnected`` only when its low-precision transformations match the pattern, and float operations follow
``INFERENCE_PRECISION_HINT`` only where the CPU supports it. Settings are requests; the runtime graph says what
happened, so the harness records and the export verification checks these readings, not the settings.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

INT8_RUNTIME_PRECISIONS = ("u8", "i8")  # a FullyConnected/MatMul computing on 8-bit integer activations
MATMUL_LAYER_TYPES = ("FullyConnected", "MatMul")


def _text(value: Any) -> str:
    return value.astype(str) if hasattr(value, "astype") else str(value)


def matmul_precisions(compiled_model) -> list[tuple[str, tuple[str, ...]]]:
    """The precision every matrix multiplication of the compiled model computes in, with the names of the original
    (ONNX) nodes it covers (a fused runtime node covers the MatMul, its DequantizeLinear inputs, its bias Add).

    The precision is that of the activation input: an 8-bit integer one is an INT8 kernel. ``runtimePrecision``
    alone does not tell: a FullyConnected with float activations and int8 weights (decompressed to float while it
    computes, e.g. where a QDQ graph lacks the activation's QuantizeLinear) also reports ``i8``.
    """
    found = []
    for op in compiled_model.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if _text(info["layerType"]) in MATMUL_LAYER_TYPES:
            names = tuple(name for name in _text(info["originalLayersNames"]).split(",") if name)
            found.append((_precision_name(op.get_input_element_type(0)), names))
    return found


def executed_precision(compiled_model) -> dict[str, Any]:
    """The precisions a compiled model runs: its matmuls' (counted per runtime precision; ``int8`` when all run
    in 8-bit integers, ``mixed`` when some do), and its float operations' as the plugin resolved
    ``INFERENCE_PRECISION_HINT``."""
    counts = Counter(precision for precision, _ in matmul_precisions(compiled_model))
    int8 = sum(counts[p] for p in INT8_RUNTIME_PRECISIONS)
    total = sum(counts.values())
    if total and int8 == total:
        matmuls = "int8"
    elif int8:
        matmuls = "mixed"
    else:
        matmuls = counts.most_common(1)[0][0] if counts else "none"
    float_ops = _precision_name(compiled_model.get_property("INFERENCE_PRECISION_HINT"))
    kernels = matmul_kernels(compiled_model)
    return {"matmuls": matmuls, "float_ops": float_ops, "matmul_runtime_precisions": dict(sorted(counts.items())),
            "int8_matmuls": int8, "matmul_nodes": total, "matmul_kernels": kernels,
            "sparse_weight_matmuls": sum(n for name, n in kernels.items() if "sparse" in name.lower()),
            "amx_matmuls": sum(n for name, n in kernels.items() if "amx" in name.lower())}


def matmul_kernels(compiled_model) -> dict[str, int]:
    """The oneDNN kernels the matmuls run (``primitiveType``, e.g. ``brgemm_avx512_amx_I8``), counted: which ISA
    the engine used (AMX, AVX-512, AVX2) and whether sparse weights were decompressed (a ``sparse`` kernel)."""
    kernels = Counter(_text(op.get_rt_info()["primitiveType"]) for op in compiled_model.get_runtime_model().get_ops()
                      if _text(op.get_rt_info()["layerType"]) in MATMUL_LAYER_TYPES)
    return dict(sorted(kernels.items()))


def _precision_name(value: Any) -> str:
    """An OpenVINO element type as the short name its settings take (``<Type: 'bfloat16'>`` -> ``bf16``)."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)
