"""OpenVINO CPU backend: Intel's maintained engine (AMX, AVX-512 VNNI and BF16 kernels), a peer of DeepSparse.

An INT8 model runs from its QDQ form (``model-qdq.onnx``, named by the manifest; ``compression.qdq``): OpenVINO's
low-precision transformations turn each DequantizeLinear -> MatMul into an 8-bit ``FullyConnected``. The
MatMulInteger form in ``model.onnx`` (what DeepSparse runs) it only decompresses to float, many times slower
(docs/running.md, Which engine). What OpenVINO will run is settled once per model, on the user's files
(:func:`openvino_model`), before any length-bucket copy exists, so warnings and errors name those files, once.

Engine settings map onto OpenVINO's: ``--num-streams`` -> ``NUM_STREAMS`` with the THROUGHPUT performance hint
(more than one stream) or the LATENCY hint (one stream on all cores), ``--num-cores`` -> ``INFERENCE_NUM_THREADS``,
``--precision`` -> ``INFERENCE_PRECISION_HINT`` for the operations the model does not quantize. What the compiled
model actually executes (its matmuls' runtime precision, its float precision, its streams and threads) is read
back from it (``engine_introspection.openvino``) and recorded; settings are only requests.

One compiled model serves every thread: each ``predict`` takes one of its infer requests (one per stream) from a
pool and runs it synchronously, which releases the GIL while OpenVINO computes.
"""

from __future__ import annotations

import importlib
import logging
import queue
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine_introspection.openvino import QDQ_WEIGHT_LAYOUT
from harness.backends.base import Backend, BackendOptions, EngineOptions
from harness.backends.packed import is_packed_variant
from harness.errors import ConfigError, ModelError
from harness.models import ModelInfo, inspect_onnx_model
from harness.options import flag

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "f32", "bf16", "int8")
# The measured cost of running the MatMulInteger form instead of the QDQ form; the figures are in the docs.
FLOAT_FORM_COST = "measured 9x slower than its QDQ form on an AMX Xeon (docs/running.md, Which engine)"
INTEGER_OPERATORS = {"MatMulInteger", "QLinearMatMul"}  # DeepSparse's INT8 form, which OpenVINO decompresses
QUANTIZED_OPERATORS = INTEGER_OPERATORS | {"DequantizeLinear"}


@dataclass(frozen=True)
class OpenVinoOptions(EngineOptions):
    precision: str = flag("--precision", default="auto", choices=PRECISIONS,
                          help="OpenVINO: the precision of the operations the model does not quantize, f32 or bf16 "
                          "(auto: the engine's default, bf16 where the CPU has native BF16); int8: insist that the "
                          "model's quantized matmuls run in INT8. What ran is read back and recorded (default auto)")
    sparse_weights_rate: float | None = flag(
        "--sparse-weights-rate", type=float,
        help="OpenVINO: CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE, the weight sparsity from which INT8 matmuls use sparse "
        "weights (default: OpenVINO's, off). Its sparse kernels need AMX: on AVX-512 CPUs without it no matmul used "
        "them (run.json: backend.executed_precision.sparse_weight_matmuls)")

    perf_counters: bool = flag("--perf-counters", default=False, action="store_true",
                               help="OpenVINO: collect its per-node performance counters (PERF_COUNT) and record where "
                               "the time goes, per layer type and kernel, in run.json (backend.layer_profile); a "
                               "profiling run, slightly slower")

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.sparse_weights_rate is not None and not 0.0 <= self.sparse_weights_rate <= 1.0:
            raise ConfigError(f"--sparse-weights-rate must be within 0..1, got {self.sparse_weights_rate}")


def openvino_model(model: ModelInfo, options: BackendOptions) -> ModelInfo:
    """The file OpenVINO runs for ``model``: the QDQ form its manifest names (INT8 models exported by this
    project), else ``model`` itself; made once per backend, by :func:`harness.backends.create_backend`. The returned
    manifest records the choice (``engine_file``: bucket variants and the Ray pool's copies inherit it).

    Checks the choice against ``options`` on the user's own files: ``--precision int8`` on a model
    OpenVINO cannot run in INT8 is a ConfigError, and a model whose INT8 matmuls it would run in float is run with
    one warning that says so (:func:`int8_in_float_reason`)."""
    spec = model.manifest.get("qdq")
    precision = options.engine_options(OpenVinoOptions).precision
    slow = int8_in_float_reason(model, packing=options.packing)
    if precision == "int8" and slow:
        raise ConfigError(f"--precision int8: {slow}, so OpenVINO would run its matmuls in float; give the model's QDQ "
                          "form (model-qdq.onnx, written by this project's INT8 export) or leave --precision at auto")
    if precision == "int8" and not spec and not _operator_types(model.onnx_path) & QUANTIZED_OPERATORS:
        raise ConfigError(f"--precision int8: {model.onnx_path} is not quantized (an FP32 model runs in f32 or bf16); "
                          "give an INT8 model, such as one exported from a QAT model by this project")
    if slow:
        log.warning("%s: OpenVINO runs it in float, %s; re-export it with this version's pipeline to get "
                    "model-qdq.onnx", slow, FLOAT_FORM_COST)
    if not spec:
        return replace(model, manifest={**model.manifest, "engine_file": str(model.onnx_path)})
    path = _qdq_path(model)
    if spec.get("weight_layout") != QDQ_WEIGHT_LAYOUT:
        log.warning("%s: an older QDQ export (its manifest names no weight_layout %r): its int8 weights reach every "
                    "matmul through a Transpose, so OpenVINO's sparse-weight kernels cannot run them; re-export it with "
                    "this version's pipeline", path, QDQ_WEIGHT_LAYOUT)
    info = inspect_onnx_model(path)
    packed = model.manifest.get("packed")
    if packed and packed.get("qdq_onnx_file"):  # --packing runs the packed variant's QDQ form too
        packed = {**packed, "onnx_file": packed["qdq_onnx_file"]}
    info.manifest = {**model.manifest, "qdq": None, "packed": packed, "engine_file": str(path)}
    return info


def int8_in_float_reason(model: ModelInfo, *, packing: bool = False) -> str | None:
    """Why OpenVINO would run ``model``'s INT8 matmuls in float, naming the user's file; None when it runs them in
    INT8 (the QDQ form) or the model is a float model. ``packing``: the packed variant is what would run."""
    if "engine_file" in model.manifest:  # chosen already: the files were checked then
        return None
    spec = model.manifest.get("qdq")
    if spec:
        _qdq_path(model)
        packed = model.manifest.get("packed") or {}
        if packing and packed and not packed.get("qdq_onnx_file"):
            return (f"{model.model_dir / packed['onnx_file']} (the packed variant, which --packing runs) has no QDQ form "
                    "(its manifest names no qdq_onnx_file)")
        return None
    if _operator_types(model.onnx_path) & INTEGER_OPERATORS:
        return (f"{model.onnx_path} is in DeepSparse's INT8 operator form (MatMulInteger) and has no QDQ form "
                "(model-qdq.onnx) beside it")
    return None


def _qdq_path(model: ModelInfo) -> Path:
    path = model.model_dir / model.manifest["qdq"]["onnx_file"]
    if not path.is_file():
        raise ModelError(f"{path}: named as the QDQ form by {model.model_dir / 'manifest.json'}, but there is no "
                         "such file")
    return path


def _operator_types(onnx_path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(onnx_path), load_external_data=False).graph.node}


def warn_if_precision_not_honoured(backend: Backend, options: BackendOptions) -> None:
    """Once per backend (not per length-bucket engine): ``--precision f32|bf16`` is a request, and the CPU may not
    run the float operations in it."""
    precision = options.engine_options(OpenVinoOptions).precision
    if precision not in ("f32", "bf16"):
        return
    executed = (backend.describe().get("executed_precision") or {}).get("float_ops")
    if executed and executed != precision:
        log.warning("--precision %s: OpenVINO runs the float operations in %s on this CPU", precision, executed)


class OpenVinoBackend(Backend):
    name = "openvino"

    @staticmethod
    def import_library() -> None:
        importlib.import_module("openvino")

    @classmethod
    def engine_model(cls, model: ModelInfo, options: BackendOptions) -> ModelInfo:
        return openvino_model(model, options)

    @classmethod
    def check_built(cls, backend: Backend, options: BackendOptions) -> None:
        warn_if_precision_not_honoured(backend, options)

    def __init__(self, model: ModelInfo, options: BackendOptions) -> None:
        super().__init__(model, options)
        import openvino

        from engine_introspection.openvino import LayerProfile, executed_precision

        self.own = options.engine_options(OpenVinoOptions)
        self.profile = LayerProfile() if self.own.perf_counters else None
        # The user's file, not the temporary length-bucket copy this engine may be compiled from
        source = model.manifest.get("engine_file", str(model.onnx_path))
        self._version = openvino.get_version()
        core = openvino.Core()
        self._device = {"name": core.get_property("CPU", "FULL_DEVICE_NAME"),
                        "capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))}
        try:
            ov_model = core.read_model(str(model.onnx_path))
            # Static shapes: the compiled batch, and the model's sequence length where it is fixed (a bucket
            # variant); a symbolic sequence axis stays dynamic.
            # Several batch sizes (Server's token-budget batches): one compiled model with a batch axis bounded
            # by the largest, which runs each call at its own size instead of padding it. A packed variant always
            # gets the bounded axis: compiled with a static batch and float operations in bf16, OpenVINO 2026.4.1
            # answered packed rows with garbage (docs/performance/zen5-2026-12-07-openvino-packed-bf16/).
            batch = (openvino.Dimension(1, options.batch_size) if options.batch_sizes or is_packed_variant(model)
                     else options.batch_size)
            ov_model.reshape({port.get_any_name(): [batch, model.sequence_length or -1]
                              for port in ov_model.inputs})
            self.compiled = core.compile_model(ov_model, "CPU", self._config(options, self.own))
        except Exception as exc:
            raise ModelError(f"{source}: OpenVINO could not compile the model ({exc})") from exc
        self.executed = executed_precision(self.compiled)
        if self.own.precision == "int8" and self.executed["matmuls"] != "int8":
            raise ConfigError(f"--precision int8: OpenVINO runs the matmuls of {source} in "
                              f"{self.executed['matmul_runtime_precisions']} (export the QDQ form: model-qdq.onnx)")
        self._streams = int(self.compiled.get_property("NUM_STREAMS"))
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self._streams):
            self._requests.put(self.compiled.create_infer_request())
        self._start = self.compiled.output(model.start_output)
        self._end = self.compiled.output(model.end_output)

    @staticmethod
    def _config(options: BackendOptions, own: OpenVinoOptions) -> dict:
        streams = options.num_streams or 1
        config = {"PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY", "NUM_STREAMS": str(streams)}
        if options.num_cores:
            config["INFERENCE_NUM_THREADS"] = str(options.num_cores)
        if own.precision in ("f32", "bf16"):
            config["INFERENCE_PRECISION_HINT"] = own.precision
        if own.sparse_weights_rate is not None:
            config["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] = str(own.sparse_weights_rate)
        if own.perf_counters:
            config["PERF_COUNT"] = "YES"
        return config

    @property
    def pads_batches(self) -> bool:
        return not self.options.batch_sizes

    @property
    def parallelism(self) -> int:
        return self._streams

    @property
    def compute_streams(self) -> int:
        return self._streams

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        request = self._requests.get()
        try:
            results = request.infer(feeds)
            if self.profile is not None:
                self.profile.add(request, samples=next(iter(feeds.values())).shape[0])
            # the request's output buffers are reused by its next call: copy before handing it back
            return np.array(results[self._start]), np.array(results[self._end])
        finally:
            self._requests.put(request)

    def describe(self) -> dict:
        from engine_introspection.openvino import executed_precision

        compiled = self.compiled
        # read again: a dynamic-shape model picks its kernels at its first inference (compiled, they read "undef")
        self.executed = executed_precision(compiled)
        return {
            "backend": self.name,
            "version": self._version,
            "model_file": self.model.manifest.get("engine_file", str(self.model.onnx_path)),
            "precision": precision_label(self.executed),
            "batch_size": self.options.batch_size,
            "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
            "num_streams": self._streams,
            "inference_num_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "precision_requested": self.own.precision,
            "executed_precision": self.executed,
            "sparse_weights_decompression_rate": round(float(compiled.get_property("CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE")), 4),
            "device": self._device,
            **({"layer_profile": self.profile.as_dict()} if self.profile is not None else {}),
        }

    def close(self) -> None:
        self._requests = queue.SimpleQueue()
        self.compiled = None


def precision_label(executed: dict) -> str:
    """``int8 (float ops bf16)`` / ``bf16`` / ``f32``: what a summary line says the engine ran."""
    if executed["matmuls"] in ("int8", "mixed"):
        return f"{executed['matmuls']} (float ops {executed['float_ops']})"
    return executed["float_ops"]
