"""A small training loop around sparseml's ``ScheduledModifierManager``.

The recipe does the compression; this loop only feeds it, the way sparseml's Hugging Face ``Trainer``
integration would (that Trainer cannot be used here: its OBS gradient sampler clones the DataLoader,
which fails on accelerate's ``DataLoaderShard``):

* AdamW (HF ``adamw_torch`` defaults: betas 0.9/0.999, eps 1e-8, weight decay 0) over all parameters;
  frozen ones (``TrainableParamsModifier``) simply get no gradient;
* ``manager.modify(model, optimizer, steps_per_epoch)`` wraps the optimizer (or the fp16 ``GradScaler``):
  every ``step()`` first lets the modifiers update (LR, pruning masks, QAT observers), then steps;
* the loss goes through ``manager.loss_update(...)`` so the ``DistillationModifier`` can replace it with
  the teacher-student KL loss (hardness 1.0: distillation only);
* the OBS modifier's gradient sampler gets ``data_loader_builder`` (batches of the training data,
  ``grad_sampler_kwargs`` from the recipe, e.g. batch size 8) and ``loss_function`` (the model's own
  start/end cross-entropy), as sparseml's Trainer passes them;
* gradients are clipped to norm 1.0 (HF's default ``max_grad_norm``, which the published run used).

Per step the loop logs loss, distillation loss, task loss, LR and the current sparsity of the recipe's
parameters (tqdm postfix and ``train_log.jsonl``). It checkpoints at every epoch end and resumes from there
bit-exactly (:mod:`compression.train_checkpoint`); SIGINT/SIGTERM stop it at a checkpointed step
(:mod:`compression.train_stop`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from compression.errors import CompressionError
from compression.grad_sampler import GradSamplerSource
from compression.quantize import freeze_observers, load_manager
from compression.recipes import match_params
from compression.schedule import recipe_epochs
from compression.sparseml_logging import sparseml_loggers
from compression.train_checkpoint import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    load_checkpoint,
    load_masks,
    modifier_schedule_state,
    restore_modifier_schedule_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from compression.train_features import TrainFeatures, batch_to, iter_epoch_batches, steps_per_epoch, trim_to_longest
from compression.train_stop import StopOnSignal, TrainingStopped

log = logging.getLogger(__name__)

TRAIN_LOG_FILE = "train_log.jsonl"
EPOCH_LOG_FILE = "epochs.jsonl"


@dataclass
class TrainSettings:
    """Optimisation settings of one stage (the recipe owns LR schedule, pruning, QAT and distillation)."""

    batch_size: int = 16
    seed: int = 42
    learning_rate: float = 1e-4  # optimizer's initial LR; the recipe's LR modifiers set it from step 0 on
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    fp16: bool = False  # CUDA mixed precision with a GradScaler (the published pruning run used --fp16)
    device: str = "cpu"
    trim_padding: bool = False  # CPU speed-up: cut each batch to its longest sequence (not in the published run)
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    progress: bool = True
    # Also checkpoint mid-epoch at least this often (long CPU epochs outlast a working session); None: epoch
    # ends only. A resumed run continues bit-exactly from any step.
    checkpoint_interval_s: float | None = None

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "optimizer": "AdamW (torch)", "adam_betas": list(self.adam_betas)}


@dataclass
class TrainResult:
    """What one (possibly resumed, possibly partial) training run did."""

    steps_per_epoch: int
    total_steps: int
    completed_steps: int
    epochs: float
    trace: list[dict[str, Any]]
    epoch_log: list[dict[str, Any]]
    resumed_from_step: int | None
    duration_s: float
    finished: bool
    settings: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch RNGs (what HF's ``set_seed`` does)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(device: str | None) -> str:
    """``auto``/None: CUDA when available, else CPU; anything else is checked."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CompressionError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    return device


def _without_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")}


class SparsityProbe:
    """Fraction of zeros over a fixed set of parameters (the recipe's pruned weights)."""

    def __init__(self, model: torch.nn.Module, param_names: list[str]) -> None:
        self.params = [model.get_parameter(name) for name in param_names]
        self.total = sum(p.numel() for p in self.params)

    @torch.no_grad()
    def __call__(self) -> float | None:
        if not self.total:
            return None
        return float(sum(int((p == 0).sum()) for p in self.params)) / self.total


def _read_jsonl(path: Path, max_step: int | None = None, key: str = "step") -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if max_step is None or row[key] <= max_step]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


# ----------------------------------------------------------------------------------------------
# The loop


def train_with_recipe(
    model: torch.nn.Module,
    recipe_path: Path,
    features: TrainFeatures,
    work_dir: Path,
    settings: TrainSettings,
    *,
    teacher: torch.nn.Module | None = None,
    sparsity_patterns: list[str] | None = None,
    observer_freeze_epoch: float | None = None,
    resume: bool = False,
    stop_after_steps: int | None = None,
    on_epoch_end: Callable[[int, torch.nn.Module], dict[str, Any]] | None = None,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in place under ``recipe_path``; logs and checkpoints go to ``work_dir``.

    ``teacher`` is handed to the DistillationModifier (required when the recipe distils).
    ``sparsity_patterns`` are the recipe's pruned-parameter patterns; their sparsity is logged each step.
    ``observer_freeze_epoch``: from this epoch on every QAT observer is frozen model-wide, right when the
    recipe's QuantizationModifier freezes the ones it tracks (it misses the ``qa_outputs`` wrapper).
    ``stop_after_steps`` ends this invocation early (with a checkpoint) after that many global steps,
    e.g. to split a long run; ``resume`` continues from ``work_dir/checkpoint``.
    ``on_epoch_end(epoch_index, model)`` may return metrics (evaluation) for ``epochs.jsonl``.
    """
    started = time.perf_counter()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(settings.device)
    if settings.fp16 and not device.startswith("cuda"):
        raise CompressionError("fp16 training needs a CUDA device (drop --fp16 or use --device cuda)")
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    if len(features) == 0:
        raise CompressionError("no training features")

    seed_everything(settings.seed)
    manager = load_manager(recipe_path)
    if manager.distillation_modifiers and teacher is None:
        raise CompressionError(f"{recipe_path}: the recipe distils, but no teacher model was given")
    spe = steps_per_epoch(len(features), settings.batch_size)
    epochs = recipe_epochs(Path(recipe_path))
    total_steps = math.ceil(round(epochs * spe, 6))
    _check_step_grid(manager, spe, recipe_path)

    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
        for param in teacher.parameters():
            param.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, betas=settings.adam_betas, eps=settings.adam_eps,
        weight_decay=settings.weight_decay,
    )
    scaler = torch.amp.GradScaler("cuda") if settings.fp16 else None
    grad_source = GradSamplerSource(features, settings.batch_size, settings.seed, device, settings.trim_padding)
    manager.initialize(
        model, epoch=0.0, loggers=sparseml_loggers(),
        distillation_teacher=teacher if teacher is not None else "disable",
        grad_sampler={"data_loader_builder": grad_source.builder, "loss_function": grad_source.loss_function},
    )
    distillation = manager.distillation_modifiers[0] if manager.distillation_modifiers else None
    # sparseml may have changed the model (QAT wrapping): look the logged parameters up afterwards.
    probe = SparsityProbe(model, match_params(model, sparsity_patterns) if sparsity_patterns else [])

    checkpoint_path = work_dir / CHECKPOINT_DIR / CHECKPOINT_FILE
    log_path, epoch_log_path = work_dir / TRAIN_LOG_FILE, work_dir / EPOCH_LOG_FILE
    start_step, resumed_from = 0, None
    if resume:
        state = load_checkpoint(checkpoint_path)
        if state["steps_per_epoch"] != spe or state["total_steps"] != total_steps:
            raise CompressionError(
                f"{checkpoint_path}: made with {state['steps_per_epoch']} steps/epoch and {state['total_steps']} steps, "
                f"this run has {spe} and {total_steps} (different data or batch size); start over without --resume"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_modifier_schedule_state(manager, state["modifier_schedule"])
        load_masks(manager, state["manager"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        grad_source.rounds = state["grad_sampler_rounds"]
        set_rng_state(state["rng"])
        start_step = resumed_from = int(state["step"])
        log.info("%s: resumed from %s at step %d of %d", description, checkpoint_path, start_step, total_steps)
    trace = _read_jsonl(log_path, start_step) if resume else []
    epoch_log = _read_jsonl(epoch_log_path, start_step, key="step") if resume else []
    _write_jsonl(log_path, trace)
    _write_jsonl(epoch_log_path, epoch_log)

    wrapped = manager.modify(model, optimizer, steps_per_epoch=spe, wrap_optim=scaler, epoch=start_step / spe)
    frozen = observer_freeze_epoch is not None and start_step / spe >= observer_freeze_epoch and resume
    autocast = (lambda: torch.autocast("cuda", dtype=torch.float16)) if settings.fp16 else contextlib.nullcontext
    end_step = total_steps if stop_after_steps is None else min(total_steps, stop_after_steps)

    def checkpoint(step: int) -> None:
        save_checkpoint(checkpoint_path, {
            "format": CHECKPOINT_FORMAT, "step": step, "steps_per_epoch": spe, "total_steps": total_steps,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "manager": manager.state_dict(),
            "modifier_schedule": modifier_schedule_state(manager), "scaler": scaler.state_dict() if scaler else None,
            "grad_sampler_rounds": grad_source.rounds, "rng": rng_state(), "recipe": str(recipe_path),
        })

    last_checkpoint = time.monotonic()
    log_file = log_path.open("a")
    bar = tqdm(total=total_steps, initial=start_step, desc=description, unit="step", disable=not settings.progress,
               dynamic_ncols=True)
    step = start_step
    stop = StopOnSignal()
    try:
        stop.__enter__()
        while step < end_step:
            epoch_index, in_epoch = divmod(step, spe)
            for batch in iter_epoch_batches(features, settings.batch_size, settings.seed, epoch_index,
                                            start_step=in_epoch):
                if step >= end_step:
                    break
                step_started = time.perf_counter()
                epoch_at_step = step / spe
                batch = batch_to(trim_to_longest(batch) if settings.trim_padding else batch, device)
                model.train()
                with autocast():
                    outputs = model(**batch)
                    task_loss = outputs["loss"]
                    loss = manager.loss_update(
                        task_loss, model, optimizer, epoch_at_step, spe,
                        student_outputs=outputs, student_inputs=batch, teacher_inputs=_without_labels(batch),
                    )
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                grad_norm = (float(torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm))
                             if settings.max_grad_norm else None)
                if scaler is not None:
                    wrapped.step(optimizer)  # the wrapped GradScaler: modifiers update, then scaler.step
                    scaler.update()
                else:
                    wrapped.step()  # modifiers update (LR, masks, observers), optimizer steps, masks re-applied
                optimizer.zero_grad(set_to_none=True)
                if observer_freeze_epoch is not None and not frozen and epoch_at_step >= observer_freeze_epoch:
                    freeze_observers(model)  # the recipe just froze the observers it tracks; now all of them
                    frozen = True
                    log.info("%s: QAT observers frozen model-wide at epoch %.4f (step %d)", description,
                             epoch_at_step, step)
                step += 1

                record = _step_record(step, epoch_at_step, loss, task_loss, distillation if teacher is not None else None,
                                      optimizer, probe, grad_norm,
                                      time.perf_counter() - step_started, frozen)
                trace.append(record)
                log_file.write(json.dumps(record) + "\n")
                bar.update()
                bar.set_postfix({k: _short(record[k]) for k in ("loss", "distill_loss", "lr", "sparsity")
                                 if record.get(k) is not None}, refresh=False)
                if (settings.checkpoint_interval_s is not None and step % spe and step != end_step
                        and time.monotonic() - last_checkpoint > settings.checkpoint_interval_s):
                    log_file.flush()
                    checkpoint(step)
                    last_checkpoint = time.monotonic()
                if stop.received is not None and step % spe and step != end_step:  # (epoch ends checkpoint below)
                    log_file.flush()
                    checkpoint(step)
                    raise TrainingStopped(stop.received, step)
                if step % spe == 0 or step == end_step:
                    log_file.flush()
                    last_checkpoint = time.monotonic()
                    entry: dict[str, Any] = {"step": step, "epoch": round(step / spe, 6)}
                    if step % spe == 0 and on_epoch_end is not None:
                        entry.update(on_epoch_end(step // spe, model) or {})
                    if step % spe == 0 or step == end_step:
                        checkpoint(step)
                    epoch_log.append(entry)
                    with epoch_log_path.open("a") as handle:
                        handle.write(json.dumps(entry) + "\n")
                    if stop.received is not None and step != end_step:
                        raise TrainingStopped(stop.received, step)
    finally:
        stop.__exit__()
        bar.close()
        log_file.close()
    stop.pass_on()  # a signal during the last step (checkpointed): to whoever handled it before

    finished = step >= total_steps
    if finished:
        manager.finalize(model)
    model.eval()
    return TrainResult(
        steps_per_epoch=spe, total_steps=total_steps, completed_steps=step, epochs=epochs, trace=trace,
        epoch_log=epoch_log, resumed_from_step=resumed_from, duration_s=round(time.perf_counter() - started, 2),
        finished=finished, settings=settings.describe(),
    )


def _check_step_grid(manager, spe: int, recipe_path: Path) -> None:
    """sparseml's cyclic_linear LR divides by the cycle length in steps and fails (float modulo by zero) when
    a cycle is not a whole number of steps; refuse such a run up front instead of crashing mid-training."""
    for mod in manager.learning_rate_modifiers:
        if getattr(mod, "lr_func", None) == "cyclic_linear":
            cycle_steps = mod.cycle_epochs * spe
            if abs(cycle_steps - round(cycle_steps)) > 1e-9 or round(cycle_steps) < 2:
                raise CompressionError(
                    f"{recipe_path}: cyclic_linear cycles of {mod.cycle_epochs:g} epochs are {cycle_steps:g} steps at "
                    f"{spe} steps/epoch; sparseml needs a whole number (>= 2). Change the number of training "
                    "windows or the batch size so that cycle_epochs x steps/epoch is an integer"
                )


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _step_record(step: int, epoch: float, loss: torch.Tensor, task_loss: torch.Tensor, distillation,
                 optimizer, probe: SparsityProbe, grad_norm: float | None, seconds: float, frozen: bool) -> dict[str, Any]:
    total = float(loss.detach())
    task = float(task_loss.detach())
    distill = None
    if distillation is not None and getattr(distillation, "hardness", 0.0):
        hardness = float(distillation.hardness)
        # total = (1 - hardness) * task + hardness * distill  (sparseml's DistillationModifier)
        distill = (total - (1.0 - hardness) * task) / hardness
    return {
        "step": step,  # optimizer steps done (1-based)
        "epoch": round(epoch, 6),  # epoch at which this step ran (step - 1) / steps_per_epoch
        "loss": total,
        "task_loss": task,
        "distill_loss": distill,
        "lr": float(optimizer.param_groups[0]["lr"]),
        "sparsity": probe(),
        "grad_norm": grad_norm,
        "observers_frozen": frozen,
        "seconds": round(seconds, 4),
    }
