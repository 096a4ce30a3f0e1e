"""The engine libraries the harness runs, by name: what each one's backend and options classes are and how it
behaves. A leaf: the engine modules are imported by name, when an engine is made, so one missing library does not
break the others and nothing here imports back into the composites."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.backends.base import Backend, BackendOptions, EngineOptions
    from harness.models import ModelInfo


@dataclass(frozen=True)
class Engine:
    """One engine library; calling it builds its backend for one model file (the composites' engine maker)."""

    name: str  # as --backend takes it
    title: str  # as people write it
    module: str
    backend_class: str
    options_class: str
    streams: bool  # runs parallel streams (--num-streams)
    any_length: bool  # one session runs every sequence length (a symbolic axis); the others compile one per length

    def backend_type(self) -> type[Backend]:
        return getattr(importlib.import_module(self.module), self.backend_class)

    def options_type(self) -> type[EngineOptions]:
        return getattr(importlib.import_module(self.module), self.options_class)

    def __call__(self, model: ModelInfo, options: BackendOptions) -> Backend:
        return self.backend_type()(model, options)

    def import_library(self) -> None:
        """Import the library in the calling thread. Two threads importing one package tree at once can be handed
        a partially initialized module (deepsparse, through sparsezoo, and transformers, for scoring, both import
        requests): call this before starting a thread that imports. A library that fails to import is left to the
        backend's constructor, which reports it."""
        try:
            self.backend_type().import_library()
        except Exception:  # ImportError, or a native library that fails to load on this CPU
            pass


ENGINES = {engine.name: engine for engine in (
    Engine("deepsparse", "DeepSparse", "harness.backends.deepsparse_backend", "DeepSparseBackend", "DeepSparseOptions",
           streams=True, any_length=False),
    Engine("openvino", "OpenVINO", "harness.backends.openvino_backend", "OpenVinoBackend", "OpenVinoOptions",
           streams=True, any_length=False),
    Engine("onnxruntime", "ONNX Runtime", "harness.backends.onnxruntime_backend", "OnnxRuntimeBackend",
           "OnnxRuntimeOptions", streams=False, any_length=True),
)}
BACKENDS = tuple(ENGINES)
ENGINE_NAMES = {name: engine.title for name, engine in ENGINES.items()}


def engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise ConfigError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}") from None
