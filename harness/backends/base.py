"""The inference backend interface: run a batch of token windows, return start/end logits.

Backends know nothing about scenarios, LoadGen or the dataset. They take ``[batch, seq]`` int64 arrays
in the harness's own order (input ids, attention mask, token type ids), map them to the model's input
names, pad a short last batch up to the compiled batch size and slice the padding off the outputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from harness.backends.cluster import RayOptions
from harness.errors import ConfigError
from harness.models import ModelInfo
from harness.options import require_at_least_one


@dataclass(frozen=True)
class EngineOptions:
    """The options of one engine library: each engine module declares its own subclass, with their flags."""


E = TypeVar("E", bound=EngineOptions)


@dataclass(frozen=True)
class BackendOptions:
    """What a backend is built with: the batch and length layout, the cores, the engine's own options and where the
    engines run."""

    batch_size: int = 1
    # Server's token-budget batching: the batch sizes an engine is built for (the largest is batch_size); a call of
    # n windows is padded to the smallest that holds it. None: batch_size alone. Engines that take any batch
    # (OpenVINO with a bounded dynamic batch, ONNX Runtime on a model with a symbolic batch) pad nothing.
    batch_sizes: tuple[int, ...] | None = None
    num_cores: int | None = None  # DeepSparse cores / OpenVINO threads (None = all)
    num_streams: int | None = None  # DeepSparse / OpenVINO parallel streams (None = the engine's default)
    sequence_buckets: tuple[int, ...] | None = None  # length bucketing (harness.bucketing); None = off
    packing: bool = False  # several windows per row through the model's packed variant (backends.packed)
    engine: EngineOptions = field(default_factory=EngineOptions)  # the engine library's own (e.g. OpenVinoOptions)
    ray: RayOptions = field(default_factory=RayOptions)  # local engines, or a Ray pool (backends.ray_pool)

    def __post_init__(self) -> None:
        require_at_least_one(self, "batch_size", "num_streams", "num_cores")
        if self.batch_sizes is not None:
            sizes = tuple(sorted(set(int(n) for n in self.batch_sizes)))
            if not sizes or sizes[0] < 1 or sizes[-1] != self.batch_size:
                raise ConfigError(f"batch sizes {list(self.batch_sizes)}: each must be >= 1 and the largest the batch "
                                  f"size {self.batch_size}")
            object.__setattr__(self, "batch_sizes", sizes)
        if self.packing and self.sequence_buckets:
            raise ConfigError("--packing replaces length bucketing: give one of them")
        if self.packing and self.ray.on_ray:
            raise ConfigError("--packing runs on local engines only (not with --cluster ray)")
        if self.sequence_buckets is not None:
            from harness.bucketing import validate_buckets

            object.__setattr__(self, "sequence_buckets", validate_buckets(self.sequence_buckets))

    def engine_options(self, cls: type[E]) -> E:
        """The engine's own options, its defaults where another engine's (or none) were given."""
        return self.engine if isinstance(self.engine, cls) else cls()


class Backend(ABC):
    """One compiled model, callable from several threads at once."""

    name: str = "abstract"

    @staticmethod
    def import_library() -> None:
        """Import the engine library (see ``harness.backends.registry.Engine.import_library``)."""

    @classmethod
    def engine_model(cls, model: ModelInfo, options: BackendOptions) -> ModelInfo:
        """The form of ``model`` this engine runs (checked against ``options``); the model itself by default."""
        return model

    @classmethod
    def check_built(cls, backend: Backend, options: BackendOptions) -> None:
        """Once per built backend, however many engines it holds: warn where the engine did not do as asked."""

    def __init__(self, model: ModelInfo, options: BackendOptions) -> None:
        self.model = model
        self.options = options
        if model.batch_size is not None and model.batch_size != options.batch_size:
            raise ConfigError(
                f"{model.onnx_path}: the model has a fixed batch size of {model.batch_size}; "
                f"run it with --batch-size {model.batch_size}"
            )

    @property
    def batch_size(self) -> int:
        """The largest batch one ``predict`` call takes (the engine's compiled batch size)."""
        return self.options.batch_size

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes a call runs at without padding rows (its largest is ``batch_size``)."""
        if not self.pads_batches:
            return tuple(range(1, self.batch_size + 1))
        return self.options.batch_sizes or (self.batch_size,)

    @property
    def max_windows_per_call(self) -> int:
        """The most windows one ``predict`` call takes as one engine call (Server's token-budget batches)."""
        return self.batch_size

    def padded_rows(self, n: int) -> int:
        """The rows the engine computes for a call of ``n`` windows (the smallest batch size that holds them)."""
        return next(size for size in self.batch_sizes if size >= n)

    def batch_cost(self, lengths: Sequence[int], width: int) -> int:
        """Tokens the engine computes for one call on windows of these real ``lengths``, given as ``width``-token
        rows: padding rows and padding tokens count (Server's token budget is spent on what is computed)."""
        return self.padded_rows(len(lengths)) * width

    @property
    def sequence_buckets(self) -> tuple[int, ...] | None:
        """The sequence lengths this backend has engines for (length bucketing), or None: one length."""
        return None

    @property
    def parallelism(self) -> int:
        """How many ``predict`` calls can usefully run at once (the SUT's default worker count)."""
        return self.options.num_streams or 1

    @property
    def compute_streams(self) -> int:
        """How many ``predict`` calls compute at the same time (engine streams in all); ``parallelism`` may be
        larger where calls also wait in line to hide a round trip."""
        return self.options.num_streams or 1

    def helper_process_ids(self) -> list[int]:
        """Processes on this machine that compute for this backend outside the caller's process (their CPU
        time is the run's own work, not competing load)."""
        return []

    @property
    def pads_batches(self) -> bool:
        """True when the engine only runs full batches, so a short batch is padded (wasted work)."""
        return True

    def offline_batches(self, items: list, lengths: np.ndarray | None) -> list[list]:
        """``items`` (with their windows' real ``lengths``) cut into ``predict`` calls when all are there at
        once (Offline): full batches, one length bucket per batch when the backend has buckets."""
        from harness.bucketing import bucket_batches

        return bucket_batches(items, lengths, self.sequence_buckets, self.batch_size)

    def predict(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run up to ``batch_size`` windows; returns float32 (start_logits, end_logits), ``[n, seq]`` each."""
        n = input_ids.shape[0]
        if n == 0 or n > self.batch_size:
            raise ValueError(f"batch of {n} samples; the backend takes 1..{self.batch_size}")
        # Features are stored compactly (int32 / uint8); models take int64.
        arrays = tuple(np.asarray(a, dtype=np.int64) for a in (input_ids, attention_mask, token_type_ids))
        if self.pads_batches and (rows := self.padded_rows(n)) > n:
            arrays = tuple(_pad_rows(a, rows) for a in arrays)
        names = self.model.input_names
        feeds = {
            names["input_ids"]: arrays[0],
            names["attention_mask"]: arrays[1],
            names["token_type_ids"]: arrays[2],
        }
        start, end = self._run(feeds)
        return start[:n], end[:n]

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Run the engine on one batch; returns (start_logits, end_logits)."""

    @abstractmethod
    def describe(self) -> dict:
        """Engine name, version and the settings in force, for run.json."""

    def close(self) -> None:
        """Release the engine."""


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    padded = np.zeros((rows,) + array.shape[1:], dtype=array.dtype)
    padded[: array.shape[0]] = array
    return padded
