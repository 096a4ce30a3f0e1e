"""How far an export may be from its reference: logit bounds relative to the logit scale, F1 bounds, and the numeric
floor of an INT8 model that widens them (the measurements behind each bound: docs/compression.md, "Verification")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from compression.export import OUTPUT_NAMES

SPARSITY_TOLERANCE = 0.005  # +-0.5 percentage points of block sparsity, against the recipe's target


def check_result(passed: bool | None, **details: Any) -> dict[str, Any]:
    """One check's entry in ``verify.json``: ``passed`` (None: skipped, with a ``reason``) and what it measured."""
    return {"passed": passed, **details}


@dataclass(frozen=True)
class Tolerance:
    """Bounds on the absolute logit differences, each ``atol + rtol * max|reference logit|``: on the largest
    (``rtol``) and, when given, on the mean (``mean_rtol``)."""

    atol: float
    rtol: float
    mean_rtol: float | None = None

    def bound(self, reference_scale: float) -> float:
        return self.atol + self.rtol * reference_scale

    def mean_bound(self, reference_scale: float) -> float | None:
        return None if self.mean_rtol is None else self.atol + self.mean_rtol * reference_scale


TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "ort_vs_torch": {"fp32": Tolerance(1e-5, 1e-4), "int8": Tolerance(1e-5, 0.25, mean_rtol=0.02)},
    "deepsparse_vs_ort": {"fp32": Tolerance(1e-5, 1e-4), "int8": Tolerance(1e-5, 0.02, mean_rtol=0.02)},
    "openvino_vs_ort": {"fp32": Tolerance(1e-5, 1e-4), "int8": Tolerance(1e-5, 0.02, mean_rtol=0.02)},
}
F1_TOLERANCE = 0.5  # F1 points between an export and its PyTorch model on the same held-out windows
# On a small evaluation one answer that flips between two near-equal spans moves F1 by up to 100/questions points:
# the bound never goes below two such flips.
F1_TOLERANCE_QUESTIONS = 2


def f1_bound(questions: int, base: float = F1_TOLERANCE) -> float:
    """An F1 bound of ``base`` points (the ``f1_vs_torch`` one by default), widened on an evaluation of ``questions``
    questions to two flipped answers' worth."""
    return max(base, 100.0 * F1_TOLERANCE_QUESTIONS / max(questions, 1))


# How far an INT8 engine may be from another evaluation of the same model, in multiples of how far PyTorch in float32
# is from PyTorch in float64 (the model's numeric floor): engines land about as far apart as the two.
FLOAT64_FLOOR_FACTOR = 2.0


def f1_outside_range(f1: float, references: list[float]) -> tuple[float, float, float]:
    """The range of ``references`` (a QAT model's F1 in float32 and float64: see ``FLOAT64_FLOOR_FACTOR``) and how
    far ``f1`` lies outside it (0 inside): ``(low, high, outside)``."""
    low, high = min(references), max(references)
    return low, high, max(low - f1, f1 - high, 0.0)


def widened_to_floor(tolerance: Tolerance, floor: Mapping[str, Any] | None) -> Tolerance:
    """``tolerance``, its bounds raised to ``FLOAT64_FLOOR_FACTOR`` times the model's numeric floor where that is
    wider (``floor``: a :func:`compare_logits` result of float64 against float32 PyTorch; None: unchanged)."""
    if not floor or floor.get("relative_max_diff") is None:
        return tolerance
    return replace(tolerance, rtol=max(tolerance.rtol, FLOAT64_FLOOR_FACTOR * floor["relative_max_diff"]),
                   mean_rtol=None if tolerance.mean_rtol is None else
                   max(tolerance.mean_rtol, FLOAT64_FLOOR_FACTOR * floor["relative_mean_diff"]))


def compare_logits(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                   tolerance: Tolerance) -> dict[str, Any]:
    """A check result: ``candidate``'s start/end logits against ``reference``'s, within ``tolerance``."""
    max_diff = max(float(np.abs(reference[k] - candidate[k]).max()) for k in OUTPUT_NAMES)
    scale = max(float(np.abs(reference[k]).max()) for k in OUTPUT_NAMES)
    mean_diff = float(np.mean([np.abs(reference[k] - candidate[k]).mean() for k in OUTPUT_NAMES]))
    bound, mean_bound = tolerance.bound(scale), tolerance.mean_bound(scale)
    return check_result(
        bool(max_diff <= bound and (mean_bound is None or mean_diff <= mean_bound)),
        max_abs_diff=max_diff,
        mean_abs_diff=mean_diff,
        max_abs_reference=scale,
        relative_max_diff=max_diff / scale if scale else None,
        relative_mean_diff=mean_diff / scale if scale else None,
        tolerance={"atol": tolerance.atol, "rtol": tolerance.rtol, "bound": bound, "mean_rtol": tolerance.mean_rtol,
                   "mean_bound": mean_bound},
    )
