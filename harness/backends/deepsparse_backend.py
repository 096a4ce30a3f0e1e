"""DeepSparse engine backend (Neural Magic's sparsity-aware CPU runtime)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from harness.backends.base import Backend, BackendOptions, EngineOptions
from harness.errors import ConfigError, ModelError
from harness.models import ModelInfo
from harness.options import flag

FAST_VNNI_ENV = "NM_FAST_VNNI_EMULATION"


@dataclass(frozen=True)
class DeepSparseOptions(EngineOptions):
    scheduler: str | None = flag("--scheduler",
                                 help="DeepSparse scheduler: default | single_stream | multi_stream | elastic (default: "
                                 "multi_stream when --num-streams > 1)")
    fast_vnni_emulation: bool = flag("--fast-vnni-emulation", default=False, action="store_true",
                                     help="DeepSparse on CPUs without AVX-512 VNNI: NM_FAST_VNNI_EMULATION, a faster "
                                     "INT8 emulation that changes the numerics slightly (docs/accuracy.md; off by "
                                     "default)")

    def scheduler_for(self, streams: int | None) -> str:
        """As given, else multi_stream for parallel streams (one per core group) and the engine default (one stream
        across all cores) otherwise."""
        return self.scheduler or ("multi_stream" if streams and streams > 1 else "default")


def import_deepsparse() -> ModuleType:
    """Import deepsparse without the torch import its package __init__ drags in.

    deepsparse/__init__.py imports its TorchScript benchmark engine, which imports torch (~2.5 s,
    half of a harness process's start-up, paid by every isolated LoadGen run and Ray actor) and
    tolerates its absence. The harness needs only the engine, so while torch is not loaded yet it
    is hidden for the duration of the import; a later `import torch` in this process still works.
    """
    if "torch" in sys.modules:
        import deepsparse

        return deepsparse
    sys.modules["torch"] = None  # makes `import torch` raise ImportError, which deepsparse handles
    try:
        import deepsparse
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
    return deepsparse


class DeepSparseBackend(Backend):
    name = "deepsparse"

    @staticmethod
    def import_library() -> None:
        import_deepsparse()

    def __init__(self, model: ModelInfo, options: BackendOptions) -> None:
        super().__init__(model, options)
        deepsparse = import_deepsparse()
        own = options.engine_options(DeepSparseOptions)
        Scheduler = deepsparse.Scheduler
        name = own.scheduler_for(options.num_streams)
        try:
            scheduler = Scheduler[name]
        except KeyError:
            raise ConfigError(f"--scheduler {name!r}: DeepSparse knows {', '.join(Scheduler.__members__)}") from None
        self._version = deepsparse.__version__
        if own.fast_vnni_emulation:
            # read by the engine when it compiles (checked: set after import, it still takes effect)
            os.environ[FAST_VNNI_ENV] = "1"
        # DeepSparse compiles one batch size per engine: several sizes (Server's token-budget batches) are
        # several engines, each with its own copy of the weights.
        self.engines: dict[int, object] = {}
        try:
            for size in options.batch_sizes or (options.batch_size,):
                self.engines[size] = deepsparse.compile_model(
                    str(model.onnx_path),
                    batch_size=size,
                    num_cores=options.num_cores,
                    num_streams=options.num_streams,
                    scheduler=scheduler,
                )
        except Exception as exc:
            raise ModelError(f"{model.onnx_path}: DeepSparse could not compile the model ({exc})") from exc
        self.engine = self.engines[options.batch_size]
        self._input_order = list(self.engine.input_names)
        outputs = list(self.engine.output_names)
        self._start_index = outputs.index(model.start_output)
        self._end_index = outputs.index(model.end_output)

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        # Inputs were validated when the model was inspected; skip DeepSparse's per-call checks.
        inputs = [feeds[name] for name in self._input_order]
        outputs = self.engines[inputs[0].shape[0]].run(inputs, val_inp=False)
        return outputs[self._start_index], outputs[self._end_index]

    def describe(self) -> dict:
        engine = self.engine
        return {
            "backend": self.name,
            "version": self._version,
            "batch_size": engine.batch_size,
            "batch_sizes": sorted(self.engines),
            "num_cores": engine.num_cores,
            "num_streams": engine.num_streams,
            "scheduler": str(engine.scheduler).split(".")[-1],
            "cpu_avx_type": engine.cpu_avx_type,
            "cpu_vnni": engine.cpu_vnni,
            "fast_vnni_emulation": os.environ.get(FAST_VNNI_ENV, "0") not in ("", "0"),
            "fraction_of_supported_ops": round(float(engine.fraction_of_supported_ops), 4),
        }

    def close(self) -> None:
        self.engine = None
        self.engines = {}
