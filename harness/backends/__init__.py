"""Inference backends behind one interface; scenarios work with any of them.

A backend is one engine (:mod:`harness.backends.registry`), or a composite of engines that the composite builds
with the engine it is given: packed rows (:mod:`~harness.backends.packed`), one engine per length bucket
(:mod:`~harness.backends.bucketed`), or the Ray pool (:mod:`~harness.backends.ray_pool`), whose actors each build
this process's local backend on their node."""

from __future__ import annotations

import importlib
from functools import partial

from harness.backends.base import Backend, BackendOptions
from harness.backends.registry import BACKENDS, ENGINE_NAMES, engine
from harness.models import ModelInfo


def create_backend(name: str, model: ModelInfo, options: BackendOptions, progress: bool = False) -> Backend:
    """The named engine's backend for ``model`` as ``options`` lay it out: on a Ray cluster (``options.ray``), packed
    rows (``options.packing``), length buckets (``options.sequence_buckets``) or one engine. The engine may run
    another form of the model (OpenVINO: the QDQ form of an INT8 model), settled here, once."""
    maker = engine(name)
    backend_type = maker.backend_type()
    model = backend_type.engine_model(model, options)
    if options.ray.on_ray:
        from harness.backends.ray_pool import RayPoolBackend

        backend = RayPoolBackend(name, partial(create_local_backend, name), model, options, progress=progress)
    else:
        backend = create_local_backend(name, model, options, progress=progress)
    backend_type.check_built(backend, options)
    return backend


def create_local_backend(name: str, model: ModelInfo, options: BackendOptions, progress: bool = False) -> Backend:
    """:func:`create_backend` in this process, on the engine's form of the model (what each Ray actor builds)."""
    maker = engine(name)
    if options.packing:
        from harness.backends.packed import create_packed_backend

        return create_packed_backend(maker, model, options)
    if options.sequence_buckets:
        from harness.backends.bucketed import create_bucketed_backend

        return create_bucketed_backend(maker, model, options, progress=progress)
    return maker(model, options)


def import_engine(name: str, options: BackendOptions) -> None:
    """Import the libraries :func:`create_backend` will, in the calling thread (see ``Engine.import_library``)."""
    if options.ray.on_ray:
        try:
            importlib.import_module("ray")
        except ImportError:
            pass
    engine(name).import_library()


__all__ = ["Backend", "BackendOptions", "BACKENDS", "ENGINE_NAMES", "create_backend", "create_local_backend",
           "import_engine"]
