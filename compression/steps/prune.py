"""Step ``prune``: layer dropping (MobileBERT) + gradual 4-block oBERT pruning with distillation (the compression
recipe, derived for the model's family); magnitude scores instead of second-order ones on request."""

from __future__ import annotations

import time
from typing import Any

import torch

from compression.architecture import PRESETS as GEOMETRIES
from compression.architecture import drop_layers, encoder_layer_count
from compression.checkpoints import load_qa_model, load_tokenizer, save_checkpoint_dir
from compression.errors import CompressionError
from compression.families import RECIPE_FAMILY, family_of, geometry_summary
from compression.recipes import (
    COMPRESSION_RECIPE,
    derive_recipe,
    find_modifiers,
    kept_layer_count,
    load_recipe,
    match_params,
    pruned_param_patterns,
    pruning_target,
)
from compression.report import (
    check,
    identical_params_check,
    layer_check,
    lr_trace_check,
    plot_losses,
    plot_lr,
    plot_sparsity_trace,
    snapshot_params,
    sparsity_check,
    sparsity_trace_check,
)
from compression.schedule import pruning_schedule
from compression.sparsity import plot_sparsity_heatmap, sparsity_report
from compression.steps.common import SMOKE_NOTE, finish_step, training_report
from compression.steps.config import RunConfig
from compression.steps.data import dataset_files, evaluate_model, prepare_data
from compression.steps.teacher import cached_teacher_evaluation, ensure_smoke_teacher
from compression.train import train_with_recipe


def layers_to_keep(model: torch.nn.Module, recipe_name: str, requested: int | None) -> tuple[int, str]:
    """How many leading encoder layers the student keeps, and why."""
    layers = encoder_layer_count(model)
    if requested is not None:
        return requested, "--keep-layers"
    recipe = load_recipe(recipe_name)
    keep = kept_layer_count(recipe)
    listed = keep + len([m for m in find_modifiers(recipe, "LayerPruningModifier") for _ in m.fields["layers"]])
    if layers == listed:
        return keep, f"the LayerPruningModifier of {recipe_name} (layers {keep}..{listed - 1} of {listed})"
    for geometry in GEOMETRIES.values():
        if geometry.kept_layers is not None and all(
            getattr(model.config, k) == v for k, v in geometry.config.items() if k != "architectures"
        ):
            return geometry.kept_layers, f"the '{geometry.name}' geometry preset (keeps {geometry.kept_layers} of {layers})"
    raise CompressionError(
        f"the starting model has {layers} encoder layers; the recipe's LayerPruningModifier is written for {listed}. "
        "Pass --keep-layers N"
    )


def run_prune(
    config: RunConfig, *, model_spec: str | None = None, teacher_spec: str | None = None,
    keep_layers: int | None = None, resume: bool = False, stop_after_steps: int | None = None,
    pruning_method: str = "obs",
) -> dict[str, Any]:
    """Layer dropping (MobileBERT) + gradual 4-block oBERT pruning with distillation; returns the report.
    ``pruning_method`` ``"magnitude"`` (global) or ``"magnitude-layer"`` (per matrix) runs the same recipe with
    magnitude instead of second-order scores."""
    preset = config.preset
    started = time.perf_counter()
    stage_dir = config.out_dir / "prune"
    stage_dir.mkdir(parents=True, exist_ok=True)
    if model_spec is None and preset.model is None:
        model_spec = str(ensure_smoke_teacher(config, dataset_files(config).vocab))
    model_spec = model_spec or preset.model
    teacher_spec = teacher_spec or preset.teacher or model_spec

    tokenizer = load_tokenizer(model_spec)
    model = load_qa_model(model_spec, role="student")
    teacher = load_qa_model(teacher_spec, role="teacher").eval()
    data = prepare_data(config, tokenizer)

    family = family_of(model)
    original_layers = encoder_layer_count(model)
    if family.drops_layers:
        keep, keep_reason = layers_to_keep(model, COMPRESSION_RECIPE, keep_layers)
    else:
        keep, keep_reason = original_layers, (f"not applied: layer dropping is {RECIPE_FAMILY.name}'s (the recipe's "
                                              f"LayerPruningModifier), the model is a {family.name}")
    drop_layers(model, keep)  # before the recipe: its parameter names must be those of the model it runs on

    recipe_path = derive_recipe(
        COMPRESSION_RECIPE, stage_dir / "recipe.yaml", drop_layer_pruning=True, epoch_scale=preset.prune_epoch_scale,
        overrides=preset.recipe_overrides or None, target=model, pruning_method=pruning_method,
        reason="encoder layers are dropped directly before training (LayerPruningModifier followed by "
               "OBSPruningModifier fails in sparseml 1.8: a pruned layer's parameters get no gradient)"
               + (f"; {preset.name} preset: epochs x{preset.prune_epoch_scale}" if preset.prune_epoch_scale else ""),
    )
    recipe = load_recipe(recipe_path)
    patterns = pruned_param_patterns(recipe)
    target = pruning_target(recipe)
    frozen = [name for m in find_modifiers(recipe, "TrainableParamsModifier") for name in m.fields["params"]]
    embeddings_before = snapshot_params(model, frozen)
    teacher_eval = cached_teacher_evaluation(teacher_spec, data) or evaluate_model(teacher, data, config, "teacher")
    on_epoch_end = ((lambda epoch, m: {"eval": evaluate_model(m, data, config, f"prune epoch {epoch}")})
                    if preset.eval_every_epoch else None)
    result = train_with_recipe(
        model, recipe_path, data.train_features, stage_dir, config.settings(preset.prune_learning_rate, preset.prune_fp16),
        teacher=teacher, sparsity_patterns=patterns, resume=resume, stop_after_steps=stop_after_steps,
        on_epoch_end=on_epoch_end, description="prune",
    )
    model.cpu()
    names = match_params(model, patterns)
    report_sparsity = sparsity_report(model, names)
    reports_dir = config.out_dir / "reports"
    schedule = pruning_schedule(recipe_path)
    checks = {
        "encoder_layers": layer_check(model, keep),
        "embeddings_identical": identical_params_check(embeddings_before, model),
        "sparsity": sparsity_check(report_sparsity, target.final_sparsity),
        "block4_aligned": check(report_sparsity["block4_aligned"],
                                zeros_outside_zero_blocks=report_sparsity["zeros_outside_zero_blocks"]),
        "lr_schedule": lr_trace_check(result.trace, recipe_path, result.steps_per_epoch, result.total_steps),
        "sparsity_schedule": sparsity_trace_check(result.trace, schedule, result.steps_per_epoch, result.total_steps),
        "distillation_active": check(all(r.get("distill_loss") is not None for r in result.trace),
                                     steps=len(result.trace)),
        "training_finished": check(result.finished, completed_steps=result.completed_steps,
                                   total_steps=result.total_steps),
    }
    evaluation = evaluate_model(model, data, config, "pruned model")
    plots = {
        "sparsity_heatmap": str(plot_sparsity_heatmap(report_sparsity, reports_dir / "prune_sparsity_heatmap.png")),
        "lr": str(plot_lr(result.trace, recipe_path, result.steps_per_epoch, result.total_steps,
                          reports_dir / "prune_lr.png", "prune: learning rate vs the recipe's schedule")),
        "loss": str(plot_losses(result.trace, reports_dir / "prune_loss.png", "prune: training losses",
                                note=SMOKE_NOTE if preset.name == "smoke" else None)),
        "sparsity_trace": str(plot_sparsity_trace(result.trace, schedule, result.steps_per_epoch, result.total_steps,
                                                  reports_dir / "prune_sparsity.png",
                                                  "prune: sparsity of the recipe's weights vs its schedule")),
    }
    output_dir = stage_dir / "model"
    info = {"step": "prune", "source_model": str(model_spec), "teacher": str(teacher_spec), "family": family.name,
            "layers": {"original": original_layers, "kept": keep, "reason": keep_reason}, "recipe": str(recipe_path),
            "pruning_method": pruning_method, "sparsity": report_sparsity["global_sparsity"], "trained": True}
    if result.finished:
        save_checkpoint_dir(model, tokenizer, output_dir, info)
    report = training_report(
        "prune", config, data, result, recipe_path,
        model={"source": str(model_spec), "teacher": str(teacher_spec),
               "output": str(output_dir) if result.finished else None,
               "layers_original": original_layers, "layers_kept": keep, "keep_reason": keep_reason,
               "geometry": geometry_summary(model.config)},
        checks=checks, sparsity=report_sparsity, evaluation={"teacher": teacher_eval, "pruned": evaluation}, plots=plots,
    )
    return finish_step(config, report, started=started, record={"output": info}, training=result)
