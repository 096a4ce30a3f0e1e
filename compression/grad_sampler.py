"""The data of sparseml's OBS gradient sampler: seeded batch streams of the training windows, one per pruning step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from compression.errors import CompressionError
from compression.train_features import TrainFeatures, batch_to, epoch_order, trim_to_longest


class GradSamplerSource:
    """Builds the OBS gradient sampler's data: a fresh, seeded batch stream per pruning step.

    sparseml calls ``data_loader_builder(grad_sampler_kwargs)`` once; we return a callable, which its
    ``GradSampler`` calls at every pruning step. Seeding each stream by (seed, round) instead of sharing
    one endless iterator makes a resumed run sample exactly the batches an uninterrupted one would.
    """

    def __init__(self, features: TrainFeatures, default_batch_size: int, seed: int, device: str, trim: bool) -> None:
        self.features, self.default_batch_size, self.seed = features, default_batch_size, seed
        self.device, self.trim = device, trim
        self.rounds = 0

    def builder(self, kwargs: dict[str, Any] | None) -> Callable[[], Iterator]:
        unknown = set(kwargs or {}) - {"batch_size"}
        if unknown:
            raise CompressionError(f"OBSPruningModifier.grad_sampler_kwargs: unsupported key(s) {sorted(unknown)}")
        batch_size = int((kwargs or {}).get("batch_size", self.default_batch_size))

        def next_round() -> Iterator[tuple[list, dict[str, torch.Tensor], None]]:
            round_index = self.rounds
            self.rounds += 1
            sub_epoch = 0
            while True:
                order = epoch_order(len(self.features), self.seed + 7919 * (round_index + 1), sub_epoch)
                for lo in range(0, len(self.features), batch_size):
                    batch = self.features.batch(order[lo:lo + batch_size])
                    yield [], batch_to(trim_to_longest(batch) if self.trim else batch, self.device), None
                sub_epoch += 1

        return next_round

    @staticmethod
    def loss_function(model_outputs: Any, loss_target: Any) -> torch.Tensor:
        return model_outputs["loss"]  # the model's start/end cross-entropy, as sparseml's Trainer uses
