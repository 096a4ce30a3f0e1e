"""One engine of one library (DeepSparse, ONNX Runtime, OpenVINO) for one model file: what the composite
backends (length buckets, packing, the Ray pool's actors) build their engines from."""

from __future__ import annotations

from harness.backends.base import Backend, BackendOptions
from harness.errors import ConfigError
from harness.models import ModelInfo

BACKENDS = ("deepsparse", "openvino", "onnxruntime")
ENGINE_NAMES = {"deepsparse": "DeepSparse", "openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}  # as people write them


def create_engine(name: str, model: ModelInfo, options: BackendOptions) -> Backend:
    """The named library's engine for ``model`` (imported lazily, so one missing engine does not break the
    others). ``options.sequence_buckets``, ``packing`` and ``cluster`` are not looked at: see
    :func:`harness.backends.create_backend`. OpenVINO runs an INT8 model from its QDQ form."""
    if name == "deepsparse":
        from harness.backends.deepsparse_backend import DeepSparseBackend

        return DeepSparseBackend(model, options)
    if name == "onnxruntime":
        from harness.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, options)
    if name == "openvino":
        from harness.backends.openvino_backend import OpenVinoBackend, openvino_model

        return OpenVinoBackend(openvino_model(model, options), options)  # idempotent: a caller may have chosen already
    raise ConfigError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}")


def import_engine(name: str, options: BackendOptions) -> None:
    """Import the libraries ``create_backend(name, ..., options)`` will, in the calling thread.

    Two threads importing one package tree at once can be handed a partially initialized module (ImportError
    "... most likely due to a circular import"): deepsparse (through sparsezoo) and transformers (the scoring
    warm-up) both import requests, and a harness job of the real-accuracy experiment died of it. Call this
    before starting a thread that imports. An engine that cannot be imported is left to ``create_backend``,
    which reports it.
    """
    try:
        if options.cluster == "ray":
            import ray  # noqa: F401
        if name == "deepsparse":
            from harness.backends.deepsparse_backend import import_deepsparse

            import_deepsparse()
        elif name == "onnxruntime":
            import onnxruntime  # noqa: F401
        elif name == "openvino":
            import openvino  # noqa: F401
    except Exception:  # ImportError, or a native library that fails to load on this CPU
        pass
