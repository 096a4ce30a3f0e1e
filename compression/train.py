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
parameters (tqdm postfix and ``train_log.jsonl``). It checkpoints at every epoch end (model, optimizer,
masks and schedule state of every modifier, RNG states, GradScaler) and resumes from there bit-exactly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from compression.errors import CompressionError
from compression.quantize import freeze_observers, load_manager, sparseml_loggers
from compression.recipes import match_params
from compression.schedule import recipe_epochs
from compression.train_features import TrainFeatures, epoch_order, iter_epoch_batches, steps_per_epoch

log = logging.getLogger(__name__)

TRAIN_LOG_FILE = "train_log.jsonl"
EPOCH_LOG_FILE = "epochs.jsonl"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
CHECKPOINT_FORMAT = 1


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


def _trim(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    length = max(int(batch["attention_mask"].sum(dim=1).max()), 1)
    return {k: (v[:, :length] if v.dim() == 2 else v) for k, v in batch.items()}


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


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


class _GradSamplerSource:
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
                    yield [], _to(_trim(batch) if self.trim else batch, self.device), None
                sub_epoch += 1

        return next_round

    @staticmethod
    def loss_function(model_outputs: Any, loss_target: Any) -> torch.Tensor:
        return model_outputs["loss"]  # the model's start/end cross-entropy, as sparseml's Trainer uses


# ----------------------------------------------------------------------------------------------
# Schedule state of the modifiers (for resuming)

_PLAIN = (bool, int, float, str, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return False


def _plain_attrs(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if _is_plain(v)}


def modifier_schedule_state(manager) -> list[dict[str, Any]]:
    """Every modifier's plain-valued attributes (started/ended flags, last update epoch, applied sparsity,
    current LR, QAT flags, ...) and those of its pruning scorer, in manager order. Masks are saved
    separately (``manager.state_dict()``)."""
    return [
        {"class": type(mod).__name__, "attrs": _plain_attrs(mod),
         "scorer_attrs": _plain_attrs(mod._scorer) if getattr(mod, "_scorer", None) is not None else {}}
        for mod in manager.iter_modifiers()
    ]


def restore_modifier_schedule_state(manager, state: list[dict[str, Any]]) -> None:
    modifiers = list(manager.iter_modifiers())
    if [type(m).__name__ for m in modifiers] != [s["class"] for s in state]:
        raise CompressionError("the checkpoint was made with a different recipe (modifier list differs); "
                               "start over without --resume")
    for mod, saved in zip(modifiers, state):
        for key, value in saved["attrs"].items():
            setattr(mod, key, value)
        for key, value in saved.get("scorer_attrs", {}).items():
            setattr(mod._scorer, key, value)
        masks = getattr(mod, "_module_masks", None)
        # A pruning modifier that had started keeps its masks enforced through hooks; re-create them.
        if masks is not None and saved["attrs"].get("_started") and not saved["attrs"].get("_ended"):
            masks.enabled = True


def load_masks(manager, state: dict[str, Any]) -> None:
    """``manager.load_state_dict`` (the pruning masks) without the scorers' mask-update hook.

    Setting masks normally tells the scorer about the change; OBS answers with its weight update (the
    Fisher-inverse correction of a pruning step), which must not run again on restoring saved masks.
    """
    detached = []
    for mod in manager.iter_modifiers():
        masks = getattr(mod, "_module_masks", None)
        if masks is not None and getattr(masks, "_scorer", None) is not None:
            detached.append((masks, masks._scorer))
            masks._scorer = None
    try:
        manager.load_state_dict(state)
    finally:
        for masks, scorer in detached:
            masks._scorer = scorer


# ----------------------------------------------------------------------------------------------
# Checkpoints


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): an interrupted save never corrupts the last checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CompressionError(f"--resume: no checkpoint at {path} (run the step once without --resume)")
    try:
        payload = torch.load(path, weights_only=False, map_location="cpu")  # our own file: RNG states etc.
    except Exception as exc:
        raise CompressionError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CompressionError(f"{path}: checkpoint format {payload.get('format')} is not {CHECKPOINT_FORMAT}")
    return payload


def _read_jsonl(path: Path, max_step: int | None = None, key: str = "step") -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if max_step is None or row[key] <= max_step]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


# ----------------------------------------------------------------------------------------------
# The loop


class TrainingStopped(KeyboardInterrupt):
    """Training stopped on SIGINT/SIGTERM after finishing a step and checkpointing it: the same run resumes
    from ``step``."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


class _StopOnSignal:
    """SIGINT/SIGTERM (Ctrl-C, schedulers, session ends) during training: finish the step, checkpoint it, then
    stop, so no work since the last periodic checkpoint is lost. A second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        log.warning("%s: finishing this training step and saving a checkpoint, then stopping (again: stop at once)",
                    signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def pass_on(self) -> None:
        """After the handlers are restored: deliver a signal that came but did not stop training (it came in
        the last step), so the program still stops as the signal asked."""
        if self.received is not None:
            signal.raise_signal(self.received)


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
    grad_source = _GradSamplerSource(features, settings.batch_size, settings.seed, device, settings.trim_padding)
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
        _set_rng_state(state["rng"])
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
            "grad_sampler_rounds": grad_source.rounds, "rng": _rng_state(), "recipe": str(recipe_path),
        })

    last_checkpoint = time.monotonic()
    log_file = log_path.open("a")
    bar = tqdm(total=total_steps, initial=start_step, desc=description, unit="step", disable=not settings.progress,
               dynamic_ncols=True)
    step = start_step
    stop = _StopOnSignal()
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
                batch = _to(_trim(batch) if settings.trim_padding else batch, device)
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
