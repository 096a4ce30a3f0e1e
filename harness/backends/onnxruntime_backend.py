"""ONNX Runtime CPU backend, the peer against which DeepSparse is compared."""

from __future__ import annotations

import numpy as np

from harness.backends.base import Backend, BackendOptions
from harness.errors import ModelError
from harness.models import ModelInfo


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: ModelInfo, options: BackendOptions) -> None:
        super().__init__(model, options)
        import onnxruntime as ort

        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = options.inter_op_threads
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
            "intra_op_threads": self.options.intra_op_threads,
            "inter_op_threads": self.options.inter_op_threads,
            "providers": self.session.get_providers(),
        }

    def close(self) -> None:
        self.session = None
