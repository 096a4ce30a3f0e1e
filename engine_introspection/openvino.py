"""What an OpenVINO compiled model actually executes, read from its runtime (execution) graph.

OpenVINO decides per operation which precision it runs: a quantized (QDQ) MatMul becomes an INT8
``FullyConnected`` only when its low-precision transformations match the pattern, and float operations follow
``INFERENCE_PRECISION_HINT`` only where the CPU supports it. Settings are requests; the runtime graph says what
happened, so the harness records and the export verification checks these readings, not the settings.

A MatMul with constant weights (a Linear) runs as a ``FullyConnected``; one of two activations (attention's
scores and context, which the QAT recipe leaves in float) as a ``MatMul``, unless fused into an attention
kernel. OpenVINO may also merge Linears that share their input into one ``FullyConnected``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

# The int8 weight layout of a QDQ export that OpenVINO's FullyConnected reads straight from a constant (torch's
# [out, in] behind a Transpose it folds; see compression/qdq.py), recorded in the model's manifest ("qdq":
# {"weight_layout": ...}): an export without it stored the weights pre-transposed.
QDQ_WEIGHT_LAYOUT = "out_in"

INT8_RUNTIME_PRECISIONS = ("u8", "i8")  # a matmul computing on 8-bit integer activations
WEIGHT_MATMUL = "FullyConnected"  # a MatMul with constant weights, as OpenVINO runs it
ACTIVATION_MATMUL = "MatMul"  # a MatMul of two activations


def _text(value: Any) -> str:
    return value.astype(str) if hasattr(value, "astype") else str(value)


def _ops(compiled_model, layer_type: str):
    for op in compiled_model.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if _text(info["layerType"]) == layer_type:
            yield op, info


def matmul_precisions(compiled_model, layer_type: str = WEIGHT_MATMUL) -> list[tuple[str, tuple[str, ...]]]:
    """The precision every runtime matmul of ``layer_type`` computes in, with the names of the original (ONNX)
    nodes it covers (a fused runtime node covers the MatMul, its DequantizeLinear inputs, its bias Add).

    The precision is that of the activation input: an 8-bit integer one is an INT8 kernel. ``runtimePrecision``
    alone does not tell: a FullyConnected with float activations and int8 weights (decompressed to float while it
    computes, e.g. where a QDQ graph lacks the activation's QuantizeLinear) also reports ``i8``.
    """
    return [(_precision_name(op.get_input_element_type(0)),
             tuple(name for name in _text(info["originalLayersNames"]).split(",") if name))
            for op, info in _ops(compiled_model, layer_type)]


def executed_precision(compiled_model) -> dict[str, Any]:
    """The precisions a compiled model runs: its weight matmuls' (counted per precision; ``int8`` when all run in
    8-bit integers, ``mixed`` when some do), its activation matmuls' (counted), and its float operations' as the
    plugin resolved ``INFERENCE_PRECISION_HINT``; with the oneDNN kernels of the weight matmuls."""
    counts = Counter(precision for precision, _ in matmul_precisions(compiled_model))
    int8 = sum(counts[p] for p in INT8_RUNTIME_PRECISIONS)
    total = sum(counts.values())
    if total and int8 == total:
        matmuls = "int8"
    elif int8:
        matmuls = "mixed"
    else:
        matmuls = counts.most_common(1)[0][0] if counts else "none"
    kernels = matmul_kernels(compiled_model)
    return {"matmuls": matmuls, "float_ops": _precision_name(compiled_model.get_property("INFERENCE_PRECISION_HINT")),
            "matmul_runtime_precisions": dict(sorted(counts.items())), "int8_matmuls": int8, "matmul_nodes": total,
            "activation_matmul_precisions": dict(sorted(Counter(
                precision for precision, _ in matmul_precisions(compiled_model, ACTIVATION_MATMUL)).items())),
            "matmul_kernels": kernels, "weight_sources": weight_sources(compiled_model),
            "sparse_weight_matmuls": sum(n for name, n in kernels.items() if "sparse" in name.lower()),
            "amx_matmuls": sum(n for name, n in kernels.items() if "amx" in name.lower())}


def weight_sources(compiled_model) -> dict[str, int]:
    """What feeds each weight matmul's weights, counted by runtime layer type: ``Const`` where they come straight
    from a constant, which OpenVINO's sparse-weight kernels require (a ``Transpose`` there keeps them off)."""
    return dict(sorted(Counter(_text(op.input(1).get_source_output().get_node().get_rt_info()["layerType"])
                               for op, _ in _ops(compiled_model, WEIGHT_MATMUL)).items()))


def matmul_kernels(compiled_model) -> dict[str, int]:
    """The oneDNN kernels the weight matmuls run (``primitiveType``, e.g. ``brgemm_avx512_amx_I8``), counted: which
    ISA the engine used (AMX, AVX-512, AVX2) and whether sparse weights were decompressed (a ``sparse`` kernel)."""
    return dict(sorted(Counter(_text(info["primitiveType"]) for _, info in _ops(compiled_model, WEIGHT_MATMUL)).items()))


def _precision_name(value: Any) -> str:
    """An OpenVINO element type as the short name its settings take (``<Type: 'bfloat16'>`` -> ``bf16``)."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


class LayerProfile:
    """OpenVINO's per-node performance counters (``PERF_COUNT``), summed over inferences by layer type and the kernel
    it ran (``exec_type``, e.g. ``brgemm_avx512_amx_I8``): where an inference's time goes, to compare two models or
    precisions layer type by layer type. ``add`` is called after each inference, from any thread."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._time_us: Counter = Counter()
        self._nodes: dict[tuple[str, str], set[str]] = {}
        self.inferences = 0
        self.samples = 0

    def add(self, request, samples: int) -> None:
        """Count one finished inference of ``request`` over ``samples`` windows (or packed rows)."""
        executed = [(info.node_type, info.exec_type, info.node_name, info.real_time.total_seconds() * 1e6)
                    for info in request.get_profiling_info() if info.status == info.Status.EXECUTED]
        with self._lock:
            for node_type, exec_type, name, micros in executed:
                self._time_us[node_type, exec_type] += micros
                self._nodes.setdefault((node_type, exec_type), set()).add(name)
            self.inferences += 1
            self.samples += samples

    def as_dict(self) -> dict[str, Any]:
        """Per layer type and kernel: its nodes and the microseconds they ran, largest first (see :func:`merge_profiles`
        and :func:`profile_per_sample`)."""
        with self._lock:
            return {"inferences": self.inferences, "samples": self.samples,
                    "layers": [{"layer_type": node_type, "exec_type": exec_type,
                                "nodes": len(self._nodes[node_type, exec_type]), "us": round(micros, 1)}
                               for (node_type, exec_type), micros in self._time_us.most_common()]}


def merge_profiles(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """The profiles of several engines of one model (its length buckets) as one: times and counts summed."""
    time_us: Counter = Counter()
    nodes: dict[tuple[str, str], int] = {}
    for profile in profiles:
        for layer in profile["layers"]:
            key = (layer["layer_type"], layer["exec_type"])
            time_us[key] += layer["us"]
            nodes[key] = max(nodes.get(key, 0), layer["nodes"])
    return {"inferences": sum(p["inferences"] for p in profiles), "samples": sum(p["samples"] for p in profiles),
            "layers": [{"layer_type": t, "exec_type": e, "nodes": nodes[t, e], "us": round(us, 1)}
                       for (t, e), us in time_us.most_common()]}


def profile_per_sample(profile: dict[str, Any]) -> dict[str, Any]:
    """Milliseconds per sample and share of the total, per layer type and kernel, and in all."""
    total = sum(layer["us"] for layer in profile["layers"])
    per_sample = max(profile["samples"], 1) * 1000.0
    return {"ms_per_sample": round(total / per_sample, 4), "samples": profile["samples"],
            "layers": [{**{k: layer[k] for k in ("layer_type", "exec_type", "nodes")},
                        "ms_per_sample": round(layer["us"] / per_sample, 4),
                        "share": round(layer["us"] / total, 4) if total else None} for layer in profile["layers"]]}
