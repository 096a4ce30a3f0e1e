"""The schedules a recipe prescribes, computed from the recipe file alone.

These functions are the *reference* the training reports are checked against: the LR that sparseml's
``LearningRateFunctionModifier`` entries should set at every optimizer step, and the sparsity the gradual
pruning modifier should have reached. They follow the modifiers' documented semantics:

* the manager updates modifiers at the start of each optimizer step, at ``epoch = step / steps_per_epoch``;
* an LR modifier is active from ``start_epoch`` and sets ``lr_func(epoch)``; where one modifier ends
  and the next starts at the same epoch, the later one (in start order) wins;
* ``linear``: ``init + (epoch - start) / (end - start) * (final - init)``;
  ``cyclic_linear``: linear decay from ``init_lr`` to ``final_lr`` over each cycle of ``cycle_epochs``,
  restarting at ``init_lr`` (sparseml counts the cycle in steps and divides by ``cycle_steps - 1``);
* gradual pruning: masks are recomputed at ``start_epoch``, then every ``update_frequency`` epochs, and at
  ``end_epoch``; the target follows ``inter_func`` (cubic: ``init + (final - init) * (1 - (1 - x)^3)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from compression.errors import RecipeError
from compression.recipes import Recipe, RecipeModifier, find_modifiers, load_recipe

GRADUAL_PRUNING_TAGS = ("OBSPruningModifier", "GMPruningModifier", "MagnitudePruningModifier",
                        "GlobalMagnitudePruningModifier")


def _as_recipe(recipe: Recipe | str | Path) -> Recipe:
    return recipe if isinstance(recipe, dict) else load_recipe(recipe)


@dataclass(frozen=True)
class LRSegment:
    start_epoch: float
    end_epoch: float
    lr_func: str
    init_lr: float
    final_lr: float
    cycle_epochs: float

    def lr(self, epoch: float, steps_per_epoch: int) -> float:
        if self.lr_func == "linear":
            return self.init_lr + (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch) * (
                self.final_lr - self.init_lr)
        if self.lr_func == "cosine":
            x = (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch)
            low, high = sorted((self.init_lr, self.final_lr))
            phase = 0.0 if self.final_lr < self.init_lr else math.pi
            return math.cos(x * math.pi + phase) * (high - low) / 2 + (high - low) / 2 + low
        if self.lr_func == "cyclic_linear":
            total_steps = (self.end_epoch - self.start_epoch) * steps_per_epoch
            cycle_steps = self.cycle_epochs * steps_per_epoch
            step = (epoch - self.start_epoch) * steps_per_epoch
            if step > int(total_steps / cycle_steps) * cycle_steps:  # a last, shorter cycle
                cycle_steps = total_steps % cycle_steps
            return self.init_lr - (step % cycle_steps) / (cycle_steps - 1) * (self.init_lr - self.final_lr)
        raise RecipeError(f"LearningRateFunctionModifier: unsupported lr_func {self.lr_func!r}")


def lr_segments(recipe: Recipe | str | Path) -> list[LRSegment]:
    """The recipe's LearningRateFunctionModifier entries, in start order."""
    segments = []
    for modifier in find_modifiers(_as_recipe(recipe), "LearningRateFunctionModifier"):
        fields = modifier.fields
        try:
            segments.append(LRSegment(
                start_epoch=float(fields.get("start_epoch", 0.0)), end_epoch=float(fields["end_epoch"]),
                lr_func=str(fields["lr_func"]), init_lr=float(fields["init_lr"]), final_lr=float(fields["final_lr"]),
                cycle_epochs=float(fields.get("cycle_epochs", 1.0)),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"LearningRateFunctionModifier {fields}: missing or invalid field ({exc})") from exc
    return sorted(segments, key=lambda s: s.start_epoch)


def expected_lr(segments: list[LRSegment], step: int, steps_per_epoch: int) -> float | None:
    """The LR the recipe sets for optimizer step ``step`` (0-based); None before any LR modifier starts."""
    epoch = step / steps_per_epoch
    active = [s for s in segments if s.start_epoch <= epoch]
    return active[-1].lr(epoch, steps_per_epoch) if active else None


def lr_schedule(recipe: Recipe | str | Path, steps_per_epoch: int, total_steps: int) -> list[float | None]:
    """:func:`expected_lr` for steps ``0 .. total_steps - 1``."""
    segments = lr_segments(recipe)
    return [expected_lr(segments, step, steps_per_epoch) for step in range(total_steps)]


@dataclass(frozen=True)
class PruningSchedule:
    tag: str
    start_epoch: float
    end_epoch: float
    update_frequency: float
    init_sparsity: float
    final_sparsity: float
    inter_func: str

    def target(self, epoch: float) -> float:
        x = min(max((epoch - self.start_epoch) / (self.end_epoch - self.start_epoch), 0.0), 1.0)
        if self.inter_func == "linear":
            y = x
        elif self.inter_func == "cubic":
            y = 1 - (1 - x) ** 3
        elif self.inter_func == "inverse_cubic":
            y = 1 - (1 - x) ** (1 / 3)
        else:
            raise RecipeError(f"{self.tag}: unsupported inter_func {self.inter_func!r}")
        return self.init_sparsity + y * (self.final_sparsity - self.init_sparsity)

    def update_steps(self, steps_per_epoch: int, total_steps: int) -> list[int]:
        """Optimizer steps at which the masks are recomputed (sparseml's update_ready rule)."""
        steps: list[int] = []
        last_epoch = None
        for step in range(total_steps):
            epoch = step / steps_per_epoch
            if epoch < self.start_epoch:
                continue
            if last_epoch is None or epoch >= self.end_epoch or epoch >= last_epoch + self.update_frequency:
                steps.append(step)
                last_epoch = epoch
                if epoch >= self.end_epoch:
                    break
        return steps

    def sparsity_after_step(self, steps_per_epoch: int, total_steps: int) -> list[float]:
        """The target sparsity in force after each optimizer step (0 before pruning starts)."""
        updates = set(self.update_steps(steps_per_epoch, total_steps))
        current, values = 0.0, []
        for step in range(total_steps):
            if step in updates:
                current = self.target(step / steps_per_epoch)
            values.append(current)
        return values


def pruning_schedule(recipe: Recipe | str | Path) -> PruningSchedule | None:
    """The recipe's gradual pruning modifier as a schedule, or None when it has none."""
    recipe = _as_recipe(recipe)
    found: list[RecipeModifier] = [m for tag in GRADUAL_PRUNING_TAGS for m in find_modifiers(recipe, tag)]
    if not found:
        return None
    if len(found) > 1:
        raise RecipeError(f"expected one gradual pruning modifier, found {len(found)}")
    fields = found[0].fields
    try:
        return PruningSchedule(
            tag=found[0].tag, start_epoch=float(fields["start_epoch"]), end_epoch=float(fields["end_epoch"]),
            update_frequency=float(fields["update_frequency"]), init_sparsity=float(fields["init_sparsity"]),
            final_sparsity=float(fields["final_sparsity"]), inter_func=str(fields.get("inter_func", "cubic")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RecipeError(f"{found[0].tag}: missing or invalid schedule field ({exc})") from exc


def recipe_epochs(recipe: Recipe | str | Path) -> float:
    """Training length the recipe asks for: the end of its EpochRangeModifier (the latest end otherwise)."""
    recipe = _as_recipe(recipe)
    ranges = find_modifiers(recipe, "EpochRangeModifier")
    if ranges:
        return float(ranges[0].fields["end_epoch"])
    ends = [float(m.fields["end_epoch"]) for group in recipe.values() if isinstance(group, list)
            for m in group if isinstance(m, RecipeModifier) and float(m.fields.get("end_epoch", -1)) > 0]
    if not ends:
        raise RecipeError("the recipe says nothing about how many epochs to train (no EpochRangeModifier)")
    return max(ends)
