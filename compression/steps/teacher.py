"""The smoke preset's teacher (the tiny geometry fine-tuned densely, cached in ``out/teacher``), and the reuse
of a teacher's own evaluation."""

from __future__ import annotations

import filecmp
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from compression.architecture import PRESETS as GEOMETRIES
from compression.architecture import build_model
from compression.checkpoints import save_checkpoint_dir
from compression.errors import CompressionError
from compression.recipes import dense_recipe, dump_recipe
from compression.report import plot_losses
from compression.steps.common import SMOKE_NOTE, record_step
from compression.steps.config import RunConfig
from compression.steps.data import DataBundle, evaluate_model, prepare_data
from compression.train import train_with_recipe

log = logging.getLogger(__name__)

TEACHER_INFO_FILE = "teacher.json"


def cached_teacher_evaluation(teacher_spec: str, data: DataBundle) -> dict[str, Any] | None:
    """The teacher's evaluation from its teacher.json, when made on the same evaluation windows: the same
    held-out file by content (each pruning run writes its own copy of the dev split) and window count."""
    info_path = Path(str(teacher_spec)) / TEACHER_INFO_FILE
    if not info_path.is_file():
        return None
    evaluation = json.loads(info_path.read_text()).get("evaluation") or {}
    evaluated, wanted = Path(evaluation.get("eval_json") or ""), Path(data.eval_json)
    same_file = evaluated == wanted or (evaluated.is_file() and wanted.is_file()
                                        and filecmp.cmp(evaluated, wanted, shallow=False))
    return evaluation if same_file and evaluation.get("windows") == len(data.eval_features) else None


def ensure_smoke_teacher(config: RunConfig, vocab: Path) -> Path:
    """The smoke preset's teacher and starting point: the tiny geometry fine-tuned densely on the training
    split; cached in ``out/teacher`` (rebuilt when its settings change)."""
    from compression.export import load_vocab_tokenizer

    preset = config.preset
    finetune = preset.teacher_finetune
    if preset.geometry is None or finetune is None:
        raise CompressionError(f"preset {preset.name!r} has no from-scratch teacher; pass --teacher")
    teacher_dir = config.out_dir / "teacher"
    model_dir = teacher_dir / "model"
    fingerprint = {"geometry": preset.geometry, "finetune": asdict(finetune), "window": asdict(preset.window),
                   "seed": config.effective_seed, "batch_size": config.effective_batch_size,
                   "train_data": config.train_data or preset.train_data}
    info_path = model_dir / TEACHER_INFO_FILE
    if info_path.is_file() and json.loads(info_path.read_text()).get("fingerprint") == fingerprint:
        log.info("smoke teacher: cached in %s", model_dir)
        return model_dir

    started = time.perf_counter()
    tokenizer = load_vocab_tokenizer(vocab, vocab_size=int(GEOMETRIES[preset.geometry].config["vocab_size"]))
    teacher_config = replace(config, max_train_questions=finetune.max_questions)
    data = prepare_data(teacher_config, tokenizer)
    model = build_model(preset.geometry, seed=config.effective_seed).train()
    recipe_path = teacher_dir / "recipe.yaml"
    recipe_path.parent.mkdir(parents=True, exist_ok=True)
    recipe_path.write_text(dump_recipe(dense_recipe(finetune.epochs, finetune.learning_rate),
                                       header="Dense fine-tuning of the smoke teacher (from scratch)"))
    result = train_with_recipe(model, recipe_path, data.train_features, teacher_dir,
                               config.settings(finetune.learning_rate, fp16=False), description="teacher")
    evaluation = evaluate_model(model, data, config, "teacher")
    info = {"fingerprint": fingerprint, "what": f"dense '{preset.geometry}' MobileBERT fine-tuned from scratch "
            f"({result.completed_steps} steps) as the smoke teacher", "evaluation": evaluation,
            "notes": data.notes + [SMOKE_NOTE], "duration_s": round(time.perf_counter() - started, 2)}
    save_checkpoint_dir(model, tokenizer, model_dir, info)
    (model_dir / TEACHER_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    plot_losses(result.trace, config.out_dir / "reports" / "teacher_loss.png", "smoke teacher: dense fine-tuning",
                note=SMOKE_NOTE)
    record_step(config.out_dir, "teacher", {"model": str(model_dir), "steps": result.completed_steps,
                                            "duration_s": info["duration_s"], "evaluation": evaluation})
    return model_dir
