"""A training run's checkpoint: model, optimizer, pruning masks, every modifier's schedule state, RNG states and the
GradScaler, written atomically at epoch ends (and mid-epoch when asked), so a resumed run continues bit-exactly."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.errors import CompressionError

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
CHECKPOINT_FORMAT = 1

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


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
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
