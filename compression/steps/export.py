"""Step ``export``: the quantized (or only pruned) model through the one export path (:mod:`compression.export`),
verified before it is published, its held-out F1 checked against its PyTorch model's."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from compression.architecture import encoder_layer_count
from compression.checkpoints import QAT_STATE_FILE, load_qa_model, load_tokenizer
from compression.errors import CompressionError
from compression.evaluate import evaluate_squad, load_eval_features, onnx_logits, score_logits
from compression.families import RECIPE_FAMILY, family_of, geometry_summary
from compression.quantize import float64_copy, is_qat_model
from compression.recipes import (
    COMPRESSION_RECIPE,
    QUANTIZATION_RECIPE,
    derive_recipe,
    find_modifiers,
    load_recipe,
    match_params,
    pruned_param_patterns,
    pruning_target,
)
from compression.sparsity import sparsity_report
from compression.steps.common import finish_step, now, read_pipeline
from compression.steps.config import RunConfig
from compression.train import resolve_device
from squad.features import FeatureParams

if TYPE_CHECKING:
    from compression.verify import AccuracyCheck

log = logging.getLogger(__name__)


def run_export(
    config: RunConfig, *, source: str = "quantize", model_dir: Path | None = None, overwrite: bool = False,
    check_deepsparse: bool = True, evaluate: bool = True, publish_failed: bool = False,
) -> dict[str, Any]:
    """ONNX export of the quantized (or only pruned) model through the one export path, with verification.
    ``publish_failed``: publish it even if verification fails (its verify.json says so; for experiments that
    measure such a model, never for the pipeline's own output)."""
    from compression.export import export_model_dir
    from compression.verify import verify_model_dir

    started = time.perf_counter()
    stage_model = config.out_dir / source / "model"
    if not stage_model.is_dir():
        raise CompressionError(f"no {source} output in {stage_model}: run `obert-compress {source}` first")
    quantized = (stage_model / QAT_STATE_FILE).is_file()
    model = load_qa_model(stage_model).eval()
    tokenizer = load_tokenizer(stage_model)
    family = family_of(model)
    # The pruning recipe as it ran (derived for the model's family; magnitude or OBS scores).
    prune_recipe_path = config.out_dir / "prune" / "recipe.yaml"
    if not prune_recipe_path.is_file():
        prune_recipe_path = derive_recipe(COMPRESSION_RECIPE, config.out_dir / "export" / "prune_recipe.yaml",
                                          target=model, reason="the pruning recipe for the exported model's family")
    prune_recipe = load_recipe(prune_recipe_path)
    patterns = pruned_param_patterns(prune_recipe)
    target = pruning_target(prune_recipe)
    scoring = next((f"{name} ({tag})" for tag, name in (("OBSPruningModifier", "oBERT"),
                                                        ("GlobalMagnitudePruningModifier", "magnitude (global)"),
                                                        ("MagnitudePruningModifier", "magnitude (per-layer)"))
                    if find_modifiers(prune_recipe, tag)), "constant (ConstantPruningModifier)")
    report_sparsity = sparsity_report(model, match_params(model, patterns))
    pipeline = read_pipeline(config.out_dir)
    out_dir = Path(model_dir or config.out_dir / "model")
    notes = list(dict.fromkeys(
        n for step in ("prune", "quantize") for n in pipeline["steps"].get(step, {}).get("output", {}).get("notes", [])
    ))
    prune_report_path = config.out_dir / "reports" / "prune.json"
    prune_report = json.loads(prune_report_path.read_text()) if prune_report_path.is_file() else {}
    notes = list(dict.fromkeys(notes + prune_report.get("notes", [])))
    num_layers = encoder_layer_count(model)
    steps = []
    if "teacher" in pipeline["steps"]:
        steps.append(f"smoke teacher: dense tiny MobileBERT fine-tuned from scratch ({pipeline['steps']['teacher']['steps']} steps)")
    if "prune" in pipeline["steps"]:
        layers = prune_report.get("model", {})
        steps.append(f"layer dropping: kept encoder layers 0..{num_layers - 1} of {layers.get('layers_original', '?')} "
                     f"({layers.get('keep_reason', 'recipe')})")
        steps.append(f"gradual {scoring.rsplit(' (', 1)[0]} pruning with distillation ({COMPRESSION_RECIPE}"
                     f"{'' if family == RECIPE_FAMILY else f', derived for {family.name}'}, "
                     f"{pipeline['steps']['prune']['steps']} steps): {100 * report_sparsity['global_sparsity']:.2f}% "
                     "4-block sparsity")
    if quantized and "quantize" in pipeline["steps"]:
        steps.append(f"INT8 quantization-aware training with distillation, masks held ({QUANTIZATION_RECIPE}, "
                     f"{pipeline['steps']['quantize']['steps']} steps)")
    steps.append("export: ONNX via sparseml's exporter" + (" with QAT converted to INT8 operators, and the same model in "
                                                             "QDQ form (model-qdq.onnx)" if quantized else ""))
    warning = " ".join(notes) if notes else None
    manifest = {
        "name": out_dir.name,
        "description": f"{scoring.rsplit(' (', 1)[0]}-pruned {family.name} ({config.preset.name} preset): {num_layers} "
                       "encoder layers, "
                       f"{100 * report_sparsity['global_sparsity']:.1f}% 4-block sparse, {'INT8' if quantized else 'FP32'}"
                       + (f". {warning}" if warning else ""),
        "trained": True,
        "preset": config.preset.name,
        "notes": notes,
        "geometry": geometry_summary(model.config),
        "num_layers": num_layers,
        "sparsity": round(report_sparsity["global_sparsity"], 6),
        "block_pattern": target.mask_type,
        "sparsity_details": {
            "target": target.final_sparsity, "achieved": report_sparsity["global_sparsity"],
            "block_sparsity": report_sparsity["block_sparsity"], "block4_aligned": report_sparsity["block4_aligned"],
            "global_ranking": target.global_sparsity, "scoring": scoring,
            "num_weights": report_sparsity["total_weights"], "param_patterns": patterns,
            "params": [*report_sparsity["params"]],
        },
        "steps": steps,
        "steps_ran": sorted(pipeline["steps"]),
        "recipes": {"compression": COMPRESSION_RECIPE, "quantization": QUANTIZATION_RECIPE if quantized else None},
        "evaluation": {k: pipeline["steps"].get(k, {}).get("evaluation") for k in ("teacher",)},
    }
    if warning:
        manifest["warning"] = warning
    extra_files = {f"{step}_recipe.yaml": config.out_dir / step / "recipe.yaml" for step in ("prune", "quantize")
                   if (config.out_dir / step / "recipe.yaml").is_file() and (step == "prune" or quantized)}
    for name in ("prune.json", "quantize.json"):
        if (config.out_dir / "reports" / name).is_file():
            extra_files[f"report_{name}"] = config.out_dir / "reports" / name
    verification: dict[str, Any] = {}
    # Scored before publishing: an export that loses held-out F1 against its PyTorch model is not published.
    accuracy = export_accuracy_check(config, source, model) if evaluate and pipeline["steps"] else None

    def verify_staged(staged: Path) -> None:
        verification.update(verify_model_dir(staged, model, raise_on_failure=not publish_failed, published_as=out_dir,
                                             check_deepsparse=check_deepsparse, accuracy=accuracy))

    export_model_dir(model, out_dir, tokenizer=tokenizer, sequence_length=384, quantized=quantized,
                     manifest=manifest, overwrite=overwrite, extra_files=extra_files, before_publish=verify_staged,
                     packed_variant=True)
    onnx_eval = verification["checks"]["f1_vs_torch"].get("onnx")
    checks = {name: {"passed": c["passed"], **{k: v for k, v in c.items() if k != "passed"}}
              for name, c in verification["checks"].items()}
    report = {
        "step": "export",
        "created_utc": now(),
        "preset": config.preset.name,
        "notes": notes,
        "model_dir": str(out_dir),
        "source": str(stage_model),
        "quantized": quantized,
        "manifest": manifest,
        "verification": {k: v for k, v in verification.items() if k != "checks"},
        "checks": checks,
        "evaluation": {"onnx": onnx_eval},
    }
    return finish_step(config, report, started=started, record={"model_dir": str(out_dir)})


# The windows an export is scored on: the harness's (MLPerf's 384/128/64), whatever the training preset used.
EXPORT_EVAL_PARAMS = FeatureParams(max_seq_length=384, doc_stride=128, max_query_length=64)
EVALUATION_KEY = {"quantize": "qat", "prune": "pruned"}  # a step report's evaluation of its own output model


def export_accuracy_check(config: RunConfig, source: str, model: torch.nn.Module) -> AccuracyCheck | None:
    """The held-out F1 check of an export against its PyTorch model (``compression.verify.AccuracyCheck``) on
    the export's windows, or None when the pipeline never evaluated on held-out data.

    The PyTorch model's F1 comes from its step's report when that was measured on the same windows (same file,
    parameters and count); otherwise it is measured here."""
    from compression.verify import AccuracyCheck

    report_path = config.out_dir / "reports" / f"{source}.json"
    if not report_path.is_file():
        return None
    report = json.loads(report_path.read_text())
    eval_json = Path(report["data"]["eval_json"])
    features = load_eval_features(eval_json, config.out_dir / "data" / "tokenizer" / "vocab.txt", EXPORT_EVAL_PARAMS,
                                  config.out_dir / "data" / "features", config.effective_max_eval_windows)
    measured = (report.get("evaluation") or {}).get(EVALUATION_KEY[source]) or {}
    if report["data"].get("eval_params") == asdict(EXPORT_EVAL_PARAMS) and measured.get("windows") == len(features):
        reference = {**measured, "measured_in": str(report_path)}
    else:
        reference = {**evaluate_squad(model, features, device=resolve_device(config.device), progress=config.progress,
                                      description="evaluating the PyTorch model on the export's windows"),
                     "measured_in": "export"}

    reference_float64 = None
    if is_qat_model(model):  # an INT8 model's reference is the range its own float rounding spans (compression.verify)
        reference_float64 = {**evaluate_squad(float64_copy(model), features, device="cpu", progress=config.progress,
                                              description="evaluating the QAT model in float64"),
                             "measured_in": "export"}

    def evaluate(onnx_path: Path) -> dict[str, Any]:
        started = time.perf_counter()
        logits = onnx_logits(onnx_path, features, progress=config.progress, threads=config.threads)
        result = {**score_logits(features, logits), "eval_json": str(eval_json), "engine": "onnxruntime",
                  "window": "384/128 (MLPerf)", "seconds": round(time.perf_counter() - started, 2)}
        log.info("exported model (ONNX Runtime): F1 %.2f, EM %.2f on %d questions (PyTorch: F1 %.2f)", result["f1"],
                 result["exact_match"], result["questions"], reference["f1"])
        return result

    return AccuracyCheck(reference=reference, evaluate=evaluate, reference_float64=reference_float64)
