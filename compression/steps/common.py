"""What every step shares: the bookkeeping of an output directory (``pipeline.json``,
``reports/<step>.json``) and :func:`finish_step`, which ends every step.

A step's report names what it made and the checks of what it claims (:mod:`compression.report`);
``finish_step`` adds its duration, writes it (``passed`` and ``failed_checks`` from its checks) and records the
step in ``pipeline.json``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cmdline.provenance import provenance
from compression.steps.config import RunConfig
from compression.steps.data import DataBundle
from compression.train import TrainResult

log = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.json"
SMOKE_NOTE = ("SMOKE-SCALE RUN: tiny model, a few hundred steps; its losses and F1 only show that the pipeline "
              "works and are not comparable to published oBERT-MobileBERT results")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_step(out_dir: Path, step: str, info: dict[str, Any]) -> None:
    """Add/replace one step's entry in ``pipeline.json`` (which steps ran, when, and how)."""
    path = Path(out_dir) / PIPELINE_FILE
    state = json.loads(path.read_text()) if path.is_file() else {"steps": {}}
    state["steps"][step] = {**info, "finished_utc": now()}
    path.write_text(json.dumps(state, indent=2) + "\n")


def read_pipeline(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / PIPELINE_FILE
    return json.loads(path.read_text()) if path.is_file() else {"steps": {}}


def write_report(out_dir: Path, name: str, report: dict[str, Any]) -> Path:
    path = Path(out_dir) / "reports" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report["passed"] = all(c.get("passed") is not False for c in report.get("checks", {}).values())
    report["failed_checks"] = [k for k, c in report.get("checks", {}).items() if c.get("passed") is False]
    report.setdefault("provenance", provenance())  # what produced it, when, at which commit, on which CPU
    path.write_text(json.dumps({"provenance": report["provenance"], **report}, indent=2, default=str) + "\n")
    status = "all checks passed" if report["passed"] else f"FAILED: {', '.join(report['failed_checks'])}"
    log.info("%s report: %s (%s)", name, path, status)
    return path


def finish_step(config: RunConfig, report: dict[str, Any], *, started: float, record: dict[str, Any],
                training: TrainResult | None = None) -> dict[str, Any]:
    """End a step: its report gets its duration since ``started`` and is written (``reports/<step>.json``, with
    ``passed`` and ``failed_checks``), and ``pipeline.json`` records the step: ``record`` (what it made), the
    report, whether it passed, its training steps (``training``) and duration. Returns the report."""
    step = report["step"]
    report["duration_s"] = round(time.perf_counter() - started, 2)
    write_report(config.out_dir, step, report)
    entry = {**record, "report": f"reports/{step}.json", "passed": report["passed"]}
    if training is not None:
        entry["steps"] = training.completed_steps
    entry["duration_s"] = report["duration_s"]
    if training is not None:
        entry["resumed_from_step"] = training.resumed_from_step
    record_step(config.out_dir, step, entry)
    return report


def training_report(step: str, config: RunConfig, data: DataBundle, result: TrainResult, recipe_path: Path, *,
                    model: dict[str, Any], checks: dict[str, Any], sparsity: dict[str, Any],
                    evaluation: dict[str, Any], plots: dict[str, str]) -> dict[str, Any]:
    """The report of a training step (prune, quantize): settings, data, training, then what the step measured;
    :func:`finish_step` completes and writes it."""
    notes = list(data.notes)
    if config.preset.name == "smoke":
        notes.append(SMOKE_NOTE)
    return {
        "step": step,
        "created_utc": now(),
        "preset": config.preset.name,
        "notes": notes,
        "recipe": str(recipe_path),
        "data": data.describe(),
        "training": {
            "steps_per_epoch": result.steps_per_epoch, "total_steps": result.total_steps,
            "completed_steps": result.completed_steps, "epochs": result.epochs, "finished": result.finished,
            "resumed_from_step": result.resumed_from_step, "duration_s": result.duration_s,
            "settings": result.settings,
            "final": {k: result.trace[-1].get(k) for k in ("loss", "distill_loss", "task_loss", "lr", "sparsity")}
            if result.trace else None,
            "log": str(config.out_dir / Path(recipe_path).parent.name / "train_log.jsonl"),
        },
        "model": model,
        "checks": checks,
        "sparsity_report": sparsity,
        "evaluation": evaluation,
        "epoch_log": result.epoch_log,
        "plots": plots,
    }
