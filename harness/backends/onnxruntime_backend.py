"""ONNX Runtime CPU backend, the peer against which DeepSparse is compared."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from harness.backends.base import Backend, BackendOptions, EngineOptions
from harness.errors import ModelError
from harness.models import ModelInfo
from harness.options import flag


@dataclass(frozen=True)
class OnnxRuntimeOptions(EngineOptions):
    intra_op_threads: int = flag("--intra-op-threads", default=0, type=int,
                                 help="ONNX Runtime intra-op threads (default: all cores)")
    inter_op_threads: int = flag("--inter-op-threads", default=0, type=int, help="ONNX Runtime inter-op threads")


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    @staticmethod
    def import_library() -> None:
        importlib.import_module("onnxruntime")

    def __init__(self, model: ModelInfo, options: BackendOptions) -> None:
        super().__init__(model, options)
        import onnxruntime as ort

        self.own = options.engine_options(OnnxRuntimeOptions)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = self.own.intra_op_threads
        session_options.inter_op_num_threads = self.own.inter_op_threads
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._version = ort.__version__
        try:
            self.session = ort.InferenceSession(
                str(model.onnx_path), session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelError(f"{model.onnx_path}: ONNX Runtime could not load the model ({exc})") from exc
        self._outputs = [model.start_output, model.end_output]

    @property
    def pads_batches(self) -> bool:
        # A dynamic batch axis runs short batches as they are; a fixed one needs padding.
        return self.model.batch_size is not None

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.session.run(self._outputs, feeds)
        return start, end

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "version": self._version,
            "batch_size": self.options.batch_size,
            "intra_op_threads": self.own.intra_op_threads,
            "inter_op_threads": self.own.inter_op_threads,
            "providers": self.session.get_providers(),
        }

    def close(self) -> None:
        self.session = None
