"""The backend that runs in this process: packed rows, one engine per length bucket, or a single engine.
Apart from :mod:`harness.backends` so that the Ray pool's actors, which build exactly this on their node, and
the package's ``create_backend``, which may choose the Ray pool, do not import each other."""

from __future__ import annotations

from harness.backends.base import Backend, BackendOptions
from harness.backends.single import BACKENDS, create_engine
from harness.models import ModelInfo


def create_local_backend(name: str, model: ModelInfo, options: BackendOptions, progress: bool = False) -> Backend:
    """:func:`harness.backends.create_backend` less the Ray pool (``options.cluster`` is not looked at)."""
    if name == "openvino":
        from harness.backends.openvino_backend import openvino_model

        model = openvino_model(model, options)
    if name in BACKENDS and options.packing:
        from harness.backends.packed import create_packed_backend

        return create_packed_backend(name, model, options)
    if name in BACKENDS and options.sequence_buckets:
        from harness.backends.bucketed import create_bucketed_backend

        return create_bucketed_backend(name, model, options, progress=progress)
    return create_engine(name, model, options)
