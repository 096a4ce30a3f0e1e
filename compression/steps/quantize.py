"""Step ``quantize``: INT8 quantization-aware training of the pruned model (the quantization recipe), masks held,
with distillation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from compression.checkpoints import load_qa_model, load_tokenizer, save_qat_dir
from compression.errors import CompressionError
from compression.recipes import (
    QUANTIZATION_RECIPE,
    derive_recipe,
    find_modifiers,
    load_recipe,
    match_params,
    pruned_param_patterns,
)
from compression.report import check, lr_trace_check, masks_unchanged_check, plot_losses, plot_lr, qat_state, zero_masks
from compression.sparsity import sparsity_report
from compression.steps.common import SMOKE_NOTE, finish_step, training_report
from compression.steps.config import RunConfig
from compression.steps.data import evaluate_model, prepare_data
from compression.train import train_with_recipe


def run_quantize(
    config: RunConfig, *, model_spec: str | None = None, teacher_spec: str | None = None,
    resume: bool = False, stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """INT8 QAT with the masks held and distillation; returns the report."""
    preset = config.preset
    started = time.perf_counter()
    stage_dir = config.out_dir / "quantize"
    stage_dir.mkdir(parents=True, exist_ok=True)
    model_spec = model_spec or str(config.out_dir / "prune" / "model")
    if not Path(model_spec).exists() and model_spec == str(config.out_dir / "prune" / "model"):
        raise CompressionError(f"no pruned model in {model_spec}: run `obert-compress prune` first "
                               "(or pass --model-name-or-path)")
    if teacher_spec is None:
        teacher_spec = preset.teacher or str(config.out_dir / "teacher" / "model")
    tokenizer = load_tokenizer(model_spec)
    model = load_qa_model(model_spec, role="student")
    teacher = load_qa_model(teacher_spec, role="teacher").eval()
    data = prepare_data(config, tokenizer)

    recipe_path = derive_recipe(
        QUANTIZATION_RECIPE, stage_dir / "recipe.yaml", drop_layer_pruning=True, epoch_scale=preset.quantize_epoch_scale,
        target=model,
        reason="encoder layers were dropped before pruning, so the LayerPruningModifier's layers do not exist"
               + (f"; {preset.name} preset: epochs x{preset.quantize_epoch_scale}" if preset.quantize_epoch_scale else ""),
    )
    patterns = pruned_param_patterns(load_recipe(recipe_path))
    masks_before = zero_masks(model, patterns)
    quant_fields = find_modifiers(load_recipe(recipe_path), "QuantizationModifier")[0].fields
    freeze_epoch = quant_fields.get("disable_quantization_observer_epoch")
    on_epoch_end = ((lambda epoch, m: {"eval": evaluate_model(m, data, config, f"quantize epoch {epoch}")})
                    if preset.eval_every_epoch else None)
    result = train_with_recipe(
        model, recipe_path, data.train_features, stage_dir,
        config.settings(preset.quantize_learning_rate, preset.quantize_fp16), teacher=teacher,
        sparsity_patterns=patterns, observer_freeze_epoch=None if freeze_epoch is None else float(freeze_epoch),
        resume=resume, stop_after_steps=stop_after_steps, on_epoch_end=on_epoch_end, description="quantize",
    )
    model.cpu()
    names = match_params(model, patterns)
    report_sparsity = sparsity_report(model, names)
    masks_after = zero_masks(model, patterns)
    reports_dir = config.out_dir / "reports"
    submodules = list(quant_fields.get("submodules") or [])
    checks = {
        "masks_unchanged": masks_unchanged_check(masks_before, masks_after),
        "qat": qat_state(model, submodules),
        "lr_schedule": lr_trace_check(result.trace, recipe_path, result.steps_per_epoch, result.total_steps),
        "observer_freeze": check(
            freeze_epoch is not None and any(r["observers_frozen"] for r in result.trace)
            and all(r["observers_frozen"] == (r["epoch"] >= float(freeze_epoch)) for r in result.trace),
            epoch=freeze_epoch,
            first_frozen_step=next((r["step"] for r in result.trace if r["observers_frozen"]), None)),
        "distillation_active": check(all(r.get("distill_loss") is not None for r in result.trace), steps=len(result.trace)),
        "training_finished": check(result.finished, completed_steps=result.completed_steps, total_steps=result.total_steps),
    }
    evaluation = evaluate_model(model, data, config, "QAT model")
    plots = {
        "lr": str(plot_lr(result.trace, recipe_path, result.steps_per_epoch, result.total_steps,
                          reports_dir / "quantize_lr.png", "quantize: learning rate vs the recipe's schedule")),
        "loss": str(plot_losses(result.trace, reports_dir / "quantize_loss.png", "quantize (QAT): training losses",
                                note=SMOKE_NOTE if preset.name == "smoke" else None)),
    }
    output_dir = stage_dir / "model"
    info = {"step": "quantize", "source_model": str(model_spec), "teacher": str(teacher_spec), "recipe": str(recipe_path),
            "sparsity": report_sparsity["global_sparsity"], "trained": True, "notes": data.notes}
    if result.finished:
        save_qat_dir(model, tokenizer, recipe_path, output_dir, info)
    report = training_report(
        "quantize", config, data, result, recipe_path,
        model={"source": str(model_spec), "teacher": str(teacher_spec),
               "output": str(output_dir) if result.finished else None,
               "quantization": {k: quant_fields.get(k) for k in (
                   "submodules", "quantize_embeddings", "quantize_embedding_activations",
                   "quantize_linear_activations", "disable_quantization_observer_epoch")}},
        checks=checks, sparsity={k: v for k, v in report_sparsity.items() if k != "params"},
        evaluation={"qat": evaluation}, plots=plots,
    )
    return finish_step(config, report, started=started, record={"output": info}, training=result)
