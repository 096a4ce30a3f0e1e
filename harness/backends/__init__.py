"""Inference backends behind one interface; scenarios work with any of them."""

from __future__ import annotations

from harness.backends.base import Backend, BackendOptions
from harness.backends.single import BACKENDS, ENGINE_NAMES, import_engine
from harness.models import ModelInfo

# The composites build their engines with harness.backends.single (bucketed, packed) or
# harness.backends.local (the Ray pool's actors), never through this module, so imports point one way.


def create_backend(name: str, model: ModelInfo, options: BackendOptions, progress: bool = False) -> Backend:
    """Build the named backend; imports the engine lazily so one missing engine does not break the other.
    With ``options.cluster == "ray"`` a :class:`RayPoolBackend` (engines on the cluster's nodes); with
    ``options.sequence_buckets`` a :class:`BucketedBackend` holding one engine per length; with
    ``options.packing`` a :class:`PackedBackend` over the model's packed variant. OpenVINO runs an INT8 model
    from its QDQ form (``openvino_backend.openvino_model``)."""
    if name == "openvino":
        from harness.backends.openvino_backend import openvino_model

        model = openvino_model(model, options)
    if name in BACKENDS and options.cluster == "ray":
        from harness.backends.ray_pool import RayPoolBackend

        backend = RayPoolBackend(name, model, options, progress=progress)
    else:
        from harness.backends.local import create_local_backend

        backend = create_local_backend(name, model, options, progress=progress)
    if name == "openvino":
        from harness.backends.openvino_backend import warn_if_precision_not_honoured

        warn_if_precision_not_honoured(backend, options)
    return backend


__all__ = ["Backend", "BackendOptions", "BACKENDS", "ENGINE_NAMES", "create_backend", "import_engine"]
