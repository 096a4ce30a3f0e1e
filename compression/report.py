"""Checks and plots for the step reports: each report claim is computed here from the model and the
training log, and compared against what the recipe prescribes (:mod:`compression.schedule`).

Every check is ``{"passed": bool, ...details}``; a report's ``passed`` is the conjunction of its checks.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.families import encoder_layers
from compression.recipes import canonical_param_name, match_params
from compression.schedule import PruningSchedule, lr_schedule
from compression.tolerances import SPARSITY_TOLERANCE

LR_RELATIVE_TOLERANCE = 1e-6  # the LR is set by formula: actual and expected agree to rounding


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    return plt


def check(passed: bool, **details: Any) -> dict[str, Any]:
    return {"passed": bool(passed), **details}


# ----------------------------------------------------------------------------------------------
# Checks


def layer_check(model: torch.nn.Module, expected: int) -> dict[str, Any]:
    found = len(encoder_layers(model))
    return check(found == expected == model.config.num_hidden_layers, expected=expected, found=found,
                 config_num_hidden_layers=model.config.num_hidden_layers)


def snapshot_params(model: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    return {name: model.get_parameter(name).detach().cpu().clone() for name in names}


def identical_params_check(before: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, Any]:
    """Bit-identity of parameters (by canonical name) between a snapshot and the model now."""
    current = {canonical_param_name(n): p for n, p in model.named_parameters()}
    differing = [name for name, tensor in before.items()
                 if name not in current or not torch.equal(tensor, current[name].detach().cpu())]
    return check(not differing, params=list(before), differing=differing, comparison="torch.equal (bit-identical)")


def zero_masks(model: torch.nn.Module, patterns: list[str]) -> dict[str, torch.Tensor]:
    """Boolean zero masks of the recipe's parameters, keyed by canonical name."""
    return {canonical_param_name(n): (model.get_parameter(n).detach().cpu() == 0) for n in match_params(model, patterns)}


def masks_unchanged_check(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, Any]:
    changed = {name: int((before[name] != after.get(name, ~before[name])).sum()) for name in before
               if name not in after or not torch.equal(before[name], after[name])}
    return check(not changed and set(before) == set(after), params=len(before),
                 zero_weights=int(sum(int(m.sum()) for m in before.values())), changed_positions=changed)


def sparsity_check(report: dict[str, Any], target: float, tolerance: float = SPARSITY_TOLERANCE) -> dict[str, Any]:
    achieved = report["global_sparsity"]
    return check(abs(achieved - target) <= tolerance and report["block4_aligned"], target=target, tolerance=tolerance,
                 achieved=achieved, block_sparsity=report["block_sparsity"], block4_aligned=report["block4_aligned"],
                 zeros_outside_zero_blocks=report["zeros_outside_zero_blocks"])


def lr_trace_check(trace: list[dict[str, Any]], recipe_path: Path, steps_per_epoch: int, total_steps: int,
                   samples: int = 12) -> dict[str, Any]:
    """Logged LR of every step against the recipe's schedule; a sample of steps is listed for the report."""
    expected = lr_schedule(recipe_path, steps_per_epoch, total_steps)
    diffs, sampled = [], []
    sample_steps = set(np.linspace(0, len(trace) - 1, min(samples, len(trace))).round().astype(int).tolist()) if trace else set()
    for i, record in enumerate(trace):
        want = expected[record["step"] - 1]
        if want is None:
            continue
        diff = abs(record["lr"] - want)
        diffs.append(diff / max(abs(want), 1e-12))
        if i in sample_steps:
            sampled.append({"step": record["step"], "epoch": record["epoch"], "lr": record["lr"], "expected": want})
    worst = max(diffs) if diffs else math.inf
    return check(bool(diffs) and worst <= LR_RELATIVE_TOLERANCE and len(diffs) == len(trace), steps_checked=len(diffs),
                 max_relative_diff=worst, tolerance=LR_RELATIVE_TOLERANCE, sampled=sampled)


def sparsity_trace_check(trace: list[dict[str, Any]], schedule: PruningSchedule, steps_per_epoch: int,
                         total_steps: int, tolerance: float = SPARSITY_TOLERANCE) -> dict[str, Any]:
    """Logged sparsity after each step against the gradual schedule (pruning steps and cubic targets)."""
    expected = schedule.sparsity_after_step(steps_per_epoch, total_steps)
    worst, worst_step = 0.0, None
    for record in trace:
        if record.get("sparsity") is None:
            continue
        diff = abs(record["sparsity"] - expected[record["step"] - 1])
        if diff > worst:
            worst, worst_step = diff, record["step"]
    updates = schedule.update_steps(steps_per_epoch, total_steps)
    return check(worst <= tolerance, max_abs_diff=worst, at_step=worst_step, tolerance=tolerance,
                 pruning_steps=[s + 1 for s in updates], pruning_step_count=len(updates),
                 targets=[round(schedule.target(s / steps_per_epoch), 6) for s in updates])


def qat_state(model: torch.nn.Module, submodules: list[str]) -> dict[str, Any]:
    """Fake-quantize modules, whether their observers are frozen, and which submodules are quantized."""
    fake_quants = [(name, m) for name, m in model.named_modules()
                   if isinstance(m, torch.ao.quantization.FakeQuantizeBase)]
    observers_on = [name for name, m in fake_quants if bool(m.observer_enabled[0])]
    fake_quant_off = [name for name, m in fake_quants if not bool(m.fake_quant_enabled[0])]
    quantized_embeddings = sorted({name.rsplit(".weight_fake_quant", 1)[0] for name, _ in fake_quants
                                   if "embeddings" in name and name.endswith("weight_fake_quant")})
    covered = {sub: any(name.startswith(sub + ".") for name, _ in fake_quants) for sub in submodules}
    return check(bool(fake_quants) and not observers_on and not fake_quant_off and all(covered.values()),
                 fake_quantize_modules=len(fake_quants), observers_still_enabled=observers_on,
                 fake_quant_disabled=fake_quant_off, quantized_embedding_tables=quantized_embeddings,
                 submodules_quantized=covered)


# ----------------------------------------------------------------------------------------------
# Plots


def _epochs(trace: list[dict[str, Any]]) -> np.ndarray:
    return np.array([r["epoch"] for r in trace], dtype=float)


def plot_lr(trace: list[dict[str, Any]], recipe_path: Path, steps_per_epoch: int, total_steps: int, path: Path,
            title: str) -> Path:
    plt = _plt()
    expected = lr_schedule(recipe_path, steps_per_epoch, total_steps)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(np.arange(total_steps) / steps_per_epoch, [np.nan if v is None else v for v in expected], color="0.6",
            linewidth=3, label="recipe schedule (computed from the recipe)")
    ax.plot(_epochs(trace), [r["lr"] for r in trace], ".", markersize=2.5, color="tab:red",
            label="LR used by the optimizer (train_log.jsonl)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_losses(trace: list[dict[str, Any]], path: Path, title: str, note: str | None = None) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    epochs = _epochs(trace)
    window = max(1, len(trace) // 50)
    distilled = any(r.get("distill_loss") is not None for r in trace)
    total_label = "total loss (optimised; recipe hardness decides the mix)" if distilled else "loss (cross-entropy)"
    for key, label, style in (("loss", total_label, "--"),
                              ("distill_loss", "distillation loss (KL of start/end logits, T=5.5)", "-"),
                              ("task_loss", "task loss (start/end cross-entropy)", "-")):
        if key == "task_loss" and not distilled:
            continue  # identical to the loss
        values = np.array([np.nan if r.get(key) is None else r[key] for r in trace], dtype=float)
        if np.all(np.isnan(values)):
            continue
        # trailing mean: each point averages the steps up to it
        cumulative = np.cumsum(np.insert(np.nan_to_num(values), 0, 0.0))
        counts = np.minimum(np.arange(1, len(values) + 1), window)
        smooth = (cumulative[1:] - cumulative[np.arange(1, len(values) + 1) - counts]) / counts
        ax.plot(epochs, smooth, style, label=label + (f" ({window}-step mean)" if window > 1 else ""))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    wrapped_note = "\n".join(textwrap.wrap(note, 110)) if note else None
    ax.set_title(title if not note else f"{title}\n{wrapped_note}", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_sparsity_trace(trace: list[dict[str, Any]], schedule: PruningSchedule, steps_per_epoch: int,
                        total_steps: int, path: Path, title: str) -> Path:
    plt = _plt()
    expected = schedule.sparsity_after_step(steps_per_epoch, total_steps)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.step(np.arange(1, total_steps + 1) / steps_per_epoch, expected, where="post", color="0.6", linewidth=3,
            label=f"recipe: {schedule.inter_func} {schedule.init_sparsity:.0%} -> {schedule.final_sparsity:.0%}, "
            f"every {schedule.update_frequency:g} epochs")
    ax.plot([r["step"] / steps_per_epoch for r in trace], [r["sparsity"] for r in trace], ".", markersize=2.5,
            color="tab:blue", label="measured sparsity of the listed weights")
    ax.set_xlabel("epoch")
    ax.set_ylabel("sparsity")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path
