"""Inference backends behind one interface; scenarios work with any of them."""

from __future__ import annotations

from harness.backends.base import Backend, BackendOptions
from harness.errors import ConfigError
from harness.models import ModelInfo

BACKENDS = ("deepsparse", "onnxruntime")


def create_backend(name: str, model: ModelInfo, options: BackendOptions, progress: bool = False) -> Backend:
    """Build the named backend; imports the engine lazily so one missing engine does not break the other.
    With ``options.sequence_buckets`` it is a :class:`BucketedBackend` holding one engine per length; with
    ``options.packing`` a :class:`PackedBackend` over the model's packed variant."""
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
    raise ConfigError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}")


__all__ = ["Backend", "BackendOptions", "BACKENDS", "create_backend"]
