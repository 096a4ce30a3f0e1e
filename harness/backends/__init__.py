"""Inference backends behind one interface; scenarios work with any of them."""

from __future__ import annotations

from harness.backends.base import Backend, BackendOptions
from harness.errors import ConfigError
from harness.models import ModelInfo

BACKENDS = ("deepsparse", "openvino", "onnxruntime")


def create_backend(name: str, model: ModelInfo, options: BackendOptions, progress: bool = False) -> Backend:
    """Build the named backend; imports the engine lazily so one missing engine does not break the other.
    With ``options.sequence_buckets`` it is a :class:`BucketedBackend` holding one engine per length; with
    ``options.packing`` a :class:`PackedBackend` over the model's packed variant. OpenVINO runs an INT8 model
    from its QDQ form (``openvino_backend.openvino_model``)."""
    if name == "openvino":
        from harness.backends.openvino_backend import openvino_model

        model = openvino_model(model)
    if name in BACKENDS and options.cluster == "ray":
        from harness.backends.ray_pool import RayPoolBackend

        return RayPoolBackend(name, model, options, progress=progress)
    if name in BACKENDS and options.packing:
        from harness.backends.packed import create_packed_backend

        return create_packed_backend(name, model, options)
    if name in BACKENDS and options.sequence_buckets:
        from harness.backends.bucketed import create_bucketed_backend

        return create_bucketed_backend(name, model, options, progress=progress)
    if name == "deepsparse":
        from harness.backends.deepsparse_backend import DeepSparseBackend

        return DeepSparseBackend(model, options)
    if name == "onnxruntime":
        from harness.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, options)
    if name == "openvino":
        from harness.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(model, options)
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


__all__ = ["Backend", "BackendOptions", "BACKENDS", "create_backend", "import_engine"]
