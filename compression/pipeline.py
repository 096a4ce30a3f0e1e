"""The compression steps: ``prune`` -> ``quantize`` -> ``export`` (and, offline, the smoke teacher).

Layout of an output directory (``--out-dir``):

```
data/        dev split (offline), feature caches, the tokenizer's vocab
teacher/     smoke only: the densely fine-tuned tiny teacher (HF checkpoint + teacher.json), cached
prune/       recipe.yaml (derived), train_log.jsonl, epochs.jsonl, checkpoint/, model/ (HF checkpoint)
quantize/    recipe.yaml, train_log.jsonl, epochs.jsonl, checkpoint/, model/ (QAT state + config + tokenizer)
model/       the exported model directory (model.onnx, manifest.json, verify.json, config, tokenizer)
reports/     prune.json, quantize.json, export.json and their plots
pipeline.json  which steps ran, when, how long, with which settings
```

Each step reads the previous step's output by default, writes its own report and checks what the report
claims (:mod:`compression.report`); a failed check is reported (and makes the CLI exit non-zero) but
keeps the artifacts for inspection.
"""

from __future__ import annotations

import filecmp
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from compression.architecture import PRESETS as GEOMETRIES
from compression.architecture import build_model, drop_layers, encoder_layer_count
from compression.data import (
    DEV_SPLIT_NOTE,
    HF_SQUAD_SOURCE,
    TrainFeatures,
    WindowParams,
    feature_stats,
    limit_records,
    load_hf_squad,
    load_or_build_train_features,
    read_squad_records,
    split_dev_by_article,
)
from compression.errors import CompressionError
from compression.families import RECIPE_FAMILY, family_of, geometry_summary, qa_model_class
from compression.evaluate import evaluate_loss, evaluate_squad, load_eval_features, onnx_logits, score_logits
from compression.presets import PipelinePreset
from compression.recipes import (
    COMPRESSION_RECIPE,
    QUANTIZATION_RECIPE,
    derive_recipe,
    dump_recipe,
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
    masks_unchanged_check,
    plot_losses,
    plot_lr,
    plot_sparsity_trace,
    qat_state,
    snapshot_params,
    sparsity_check,
    sparsity_trace_check,
    zero_masks,
)
from compression.schedule import pruning_schedule
from compression.sparsity import plot_sparsity_heatmap, sparsity_report
from compression.train import TrainResult, TrainSettings, resolve_device, train_with_recipe
from squad.data import find_dataset
from squad.features import FeatureParams

if TYPE_CHECKING:
    from compression.verify import AccuracyCheck

log = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.json"
QAT_STATE_FILE = "qat_model.pt"
QAT_INFO_FILE = "qat_model.json"
TEACHER_INFO_FILE = "teacher.json"
SMOKE_NOTE = ("SMOKE-SCALE RUN: tiny model, a few hundred steps; its losses and F1 only show that the pipeline "
              "works and are not comparable to published oBERT-MobileBERT results")


@dataclass
class RunConfig:
    """Everything a step needs besides its own options (built by the CLI from flags and the preset)."""

    preset: PipelinePreset
    out_dir: Path
    data_dir: Path | None = None
    train_data: str | None = None  # None: the preset's
    eval_data: Path | None = None  # None: held-out split (dev-split training) or the data dir's dev set
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    batch_size: int | None = None
    seed: int | None = None
    max_train_questions: int | None = -1  # -1: the preset's; None: all
    max_eval_windows: int | None = -1

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size or self.preset.batch_size

    @property
    def effective_seed(self) -> int:
        return self.preset.seed if self.seed is None else self.seed

    @property
    def effective_max_train_questions(self) -> int | None:
        return self.preset.max_train_questions if self.max_train_questions == -1 else self.max_train_questions

    @property
    def effective_max_eval_windows(self) -> int | None:
        return self.preset.max_eval_windows if self.max_eval_windows == -1 else self.max_eval_windows

    def settings(self, learning_rate: float, fp16: bool) -> TrainSettings:
        device = resolve_device(self.device)
        return TrainSettings(
            batch_size=self.effective_batch_size, seed=self.effective_seed, learning_rate=learning_rate,
            fp16=fp16 and device.startswith("cuda"), device=device, trim_padding=self.preset.trim_padding,
            num_threads=self.threads or self.preset.threads, progress=self.progress,
            checkpoint_interval_s=self.preset.checkpoint_interval_s,
        )


# ----------------------------------------------------------------------------------------------
# Bookkeeping


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_step(out_dir: Path, step: str, info: dict[str, Any]) -> None:
    """Add/replace one step's entry in ``pipeline.json`` (which steps ran, when, and how)."""
    path = Path(out_dir) / PIPELINE_FILE
    state = json.loads(path.read_text()) if path.is_file() else {"steps": {}}
    state["steps"][step] = {**info, "finished_utc": _now()}
    path.write_text(json.dumps(state, indent=2) + "\n")


def read_pipeline(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / PIPELINE_FILE
    return json.loads(path.read_text()) if path.is_file() else {"steps": {}}


def write_report(out_dir: Path, name: str, report: dict[str, Any]) -> Path:
    path = Path(out_dir) / "reports" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report["passed"] = all(c.get("passed") is not False for c in report.get("checks", {}).values())
    report["failed_checks"] = [k for k, c in report.get("checks", {}).items() if c.get("passed") is False]
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    status = "all checks passed" if report["passed"] else f"FAILED: {', '.join(report['failed_checks'])}"
    log.info("%s report: %s (%s)", name, path, status)
    return path


# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class DataBundle:
    train_features: TrainFeatures
    train_source: str
    eval_json: Path
    vocab: Path
    eval_params: FeatureParams
    notes: list[str]
    split: dict[str, Any] | None = None
    heldout_features: TrainFeatures | None = None  # training-format windows of the eval file, for the loss
    eval_features: Any = None
    coverage: dict[str, Any] | None = None  # which training articles the windows come from (TrainFeatures.article_coverage)

    def describe(self) -> dict[str, Any]:
        return {
            "train_source": self.train_source, "train": feature_stats(self.train_features), "coverage": self.coverage,
            "eval_json": str(self.eval_json), "eval_windows": len(self.eval_features) if self.eval_features else None,
            "eval_params": asdict(self.eval_params), "split": self.split, "notes": self.notes,
        }


def dataset_files(config: RunConfig):
    from squad.data import resolve_data_dir

    data_dir = config.data_dir or resolve_data_dir(None)
    return find_dataset(data_dir, sample_dir=config.out_dir / "data" / "sample", allow_sample=False)


def prepare_data(config: RunConfig, tokenizer, window: WindowParams | None = None) -> DataBundle:
    """Training windows (labelled) and evaluation windows for one step."""
    preset = config.preset
    source = config.train_data or preset.train_data
    data_root = config.out_dir / "data"
    notes: list[str] = []
    split = None
    files = None
    if source == "dev-split":
        files = dataset_files(config)
        dev_split = split_dev_by_article(files.dev_json, data_root, validation_articles=preset.validation_articles)
        records = read_squad_records(dev_split.train_json)
        # with a validation part, every evaluation a step makes reads it; the held-out articles are left for the end
        eval_json = config.eval_data or dev_split.validation_json or dev_split.heldout_json
        split = dev_split.summary()
        notes.append(DEV_SPLIT_NOTE)
        source_desc = f"SQuAD v1.1 dev, training articles ({dev_split.train_json})"
    elif source == HF_SQUAD_SOURCE:
        records = load_hf_squad("train")
        source_desc = "Hugging Face datasets 'squad' (train split)"
        eval_json = config.eval_data
    else:
        path = Path(source)
        if not path.is_file():
            raise CompressionError(f"--train-data {source}: no such file (expected a SQuAD v1.1-format JSON file, "
                                   f"'{HF_SQUAD_SOURCE}' or 'dev-split')")
        records = read_squad_records(path)
        source_desc = str(path)
        eval_json = config.eval_data
    if eval_json is None:
        files = files or dataset_files(config)
        eval_json = files.dev_json
    limit = config.effective_max_train_questions
    records = limit_records(records, limit)
    if limit is not None:
        notes.append(f"training on {len(records)} questions only (--max-train-questions {limit})")
    window = window or preset.window
    train_features = load_or_build_train_features(records, tokenizer, window, data_root / "features",
                                                  progress=config.progress)
    available = len(train_features)
    if preset.max_train_windows and available > preset.max_train_windows:
        if preset.train_window_selection == "sample":
            articles = [records[int(i)].title for i in train_features.example_index.tolist()]
            train_features = train_features.sample(preset.max_train_windows, seed=config.effective_seed, strata=articles)
            notes.append(f"training on {preset.max_train_windows} of the {available} windows, drawn at random (seed "
                         f"{config.effective_seed}) from every article in proportion to its windows")
        else:
            train_features = train_features.subset(preset.max_train_windows)
            notes.append(f"training on the first {preset.max_train_windows} windows only")
    coverage = train_features.article_coverage(records)
    vocab_dir = data_root / "tokenizer"
    tokenizer.save_pretrained(str(vocab_dir))
    vocab = vocab_dir / "vocab.txt"
    if not vocab.is_file():
        raise CompressionError(f"the tokenizer has no WordPiece vocab.txt ({vocab_dir}); the harness's evaluation "
                               "windows need a BERT vocabulary")
    bundle = DataBundle(train_features=train_features, train_source=source_desc, eval_json=Path(eval_json),
                        vocab=vocab, eval_params=preset.eval_params, notes=notes, split=split, coverage=coverage)
    bundle.eval_features = load_eval_features(bundle.eval_json, vocab, preset.eval_params, data_root / "features",
                                              config.effective_max_eval_windows)
    if config.effective_max_eval_windows:
        notes.append(f"evaluation on the first {len(bundle.eval_features)} windows of {bundle.eval_json.name} only")
    heldout_records = read_squad_records(bundle.eval_json)
    covered = {bundle.eval_features.examples[int(i)].qas_id for i in set(bundle.eval_features.example_index.tolist())}
    heldout_records = [r for r in heldout_records if r.qas_id in covered]
    bundle.heldout_features = load_or_build_train_features(heldout_records, tokenizer, window, data_root / "features",
                                                           progress=config.progress)
    log.info("data: %d training windows from %s; evaluation on %d windows of %s", len(train_features), source_desc,
             len(bundle.eval_features), bundle.eval_json)
    return bundle


def evaluate_model(model: torch.nn.Module, data: DataBundle, config: RunConfig, label: str) -> dict[str, Any]:
    """Held-out F1/EM (harness scoring) and loss of a PyTorch model."""
    device = resolve_device(config.device)
    result = evaluate_squad(model, data.eval_features, device=device, progress=config.progress,
                            description=f"evaluating {label}")
    if data.heldout_features is not None and len(data.heldout_features):
        result["loss"] = round(evaluate_loss(model, data.heldout_features, device=device), 6)
    result["eval_json"] = str(data.eval_json)
    log.info("%s: F1 %.2f, EM %.2f on %d questions%s", label, result["f1"], result["exact_match"], result["questions"],
             f", loss {result['loss']:.4f}" if "loss" in result else "")
    return result


# ----------------------------------------------------------------------------------------------
# Models


def load_tokenizer(spec: str | Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(spec))
    except Exception as exc:
        raise CompressionError(_load_error(spec, "tokenizer", exc)) from None


def _load_error(spec: str | Path, what: str, exc: Exception) -> str:
    local = Path(str(spec)).exists()
    hint = ("not a Hugging Face checkpoint directory" if local else
            "not a local directory, and the Hugging Face hub could not be reached (it needs internet; offline, "
            "pass a local checkpoint directory, or use --preset smoke)")
    return f"cannot load the {what} {str(spec)!r}: {hint} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"


def load_qa_model(spec: str | Path) -> torch.nn.Module:
    """A question-answering model: a QAT checkpoint of this pipeline, a local HF directory or a hub id."""
    if (Path(str(spec)) / QAT_STATE_FILE).is_file():
        return load_qat_model(Path(spec))
    from transformers import AutoModelForQuestionAnswering

    try:
        model = AutoModelForQuestionAnswering.from_pretrained(str(spec))
    except Exception as exc:
        raise CompressionError(_load_error(spec, "model", exc)) from None
    family_of(model)  # a supported family, or one clear error
    return model


def save_checkpoint_dir(model: torch.nn.Module, tokenizer, out_dir: Path, extra: dict[str, Any]) -> Path:
    """A plain (non-QAT) model as a Hugging Face checkpoint directory."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "compression_info.json").write_text(json.dumps(extra, indent=2, default=str) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def save_qat_dir(model: torch.nn.Module, tokenizer, recipe_path: Path, out_dir: Path, extra: dict[str, Any]) -> Path:
    """A QAT model: its state dict (weights, fake-quant scales, observer flags) + config + tokenizer + the
    recipe that rebuilds its structure (:func:`load_qat_model`)."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / QAT_STATE_FILE)
    model.config.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.copyfile(recipe_path, tmp / "recipe.yaml")
    (tmp / QAT_INFO_FILE).write_text(json.dumps(extra, indent=2, default=str) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def load_qat_model(model_dir: Path) -> torch.nn.Module:
    """Rebuild a QAT model saved by :func:`save_qat_dir`: same structure from its recipe, then its state."""
    from transformers import AutoConfig

    from compression.quantize import load_manager, sparseml_loggers

    model_dir = Path(model_dir)
    config = AutoConfig.from_pretrained(str(model_dir))
    model = qa_model_class(family_of(config))(config)
    manager = load_manager(model_dir / "recipe.yaml")
    manager.initialize(model, epoch=0.0, loggers=sparseml_loggers())  # wraps the modules exactly as in training
    manager.finalize(model)
    state = torch.load(model_dir / QAT_STATE_FILE, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CompressionError(f"{model_dir}: the QAT state does not fit the structure its recipe builds ({exc})") from None
    return model.eval()


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


# ----------------------------------------------------------------------------------------------
# Smoke teacher


def dense_recipe(epochs: float, learning_rate: float) -> dict[str, Any]:
    """Recipe of the smoke teacher's dense fine-tuning: a linear LR decay, nothing else."""
    from compression.recipes import RecipeModifier

    return {"training_modifiers": [
        RecipeModifier("EpochRangeModifier", {"start_epoch": 0.0, "end_epoch": float(epochs)}),
        RecipeModifier("LearningRateFunctionModifier", {"start_epoch": 0.0, "end_epoch": float(epochs),
                                                        "lr_func": "linear", "init_lr": learning_rate,
                                                        "final_lr": 0.0}),
    ]}


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


# ----------------------------------------------------------------------------------------------
# Steps


def _common_report(config: RunConfig, data: DataBundle, result: TrainResult, recipe_path: Path) -> dict[str, Any]:
    notes = list(data.notes)
    if config.preset.name == "smoke":
        notes.append(SMOKE_NOTE)
    return {
        "created_utc": _now(),
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
            "log": str(config.out_dir / result_dir_name(recipe_path) / "train_log.jsonl"),
        },
    }


def result_dir_name(recipe_path: Path) -> str:
    return Path(recipe_path).parent.name


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
    model = load_qa_model(model_spec)
    teacher = load_qa_model(teacher_spec).eval()
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
    report = {
        "step": "prune",
        **_common_report(config, data, result, recipe_path),
        "model": {"source": str(model_spec), "teacher": str(teacher_spec), "output": str(output_dir) if result.finished else None,
                  "layers_original": original_layers, "layers_kept": keep, "keep_reason": keep_reason,
                  "geometry": geometry_summary(model.config)},
        "checks": checks,
        "sparsity_report": report_sparsity,
        "evaluation": {"teacher": teacher_eval, "pruned": evaluation},
        "epoch_log": result.epoch_log,
        "plots": plots,
        "duration_s": round(time.perf_counter() - started, 2),
    }
    write_report(config.out_dir, "prune", report)
    record_step(config.out_dir, "prune", {"output": info, "report": "reports/prune.json", "passed": report["passed"],
                                          "steps": result.completed_steps, "duration_s": report["duration_s"],
                                          "resumed_from_step": result.resumed_from_step})
    return report


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
    model = load_qa_model(model_spec)
    teacher = load_qa_model(teacher_spec).eval()
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
    report = {
        "step": "quantize",
        **_common_report(config, data, result, recipe_path),
        "model": {"source": str(model_spec), "teacher": str(teacher_spec),
                  "output": str(output_dir) if result.finished else None,
                  "quantization": {k: quant_fields.get(k) for k in (
                      "submodules", "quantize_embeddings", "quantize_embedding_activations",
                      "quantize_linear_activations", "disable_quantization_observer_epoch")}},
        "checks": checks,
        "sparsity_report": {k: v for k, v in report_sparsity.items() if k != "params"},
        "evaluation": {"qat": evaluation},
        "epoch_log": result.epoch_log,
        "plots": plots,
        "duration_s": round(time.perf_counter() - started, 2),
    }
    write_report(config.out_dir, "quantize", report)
    record_step(config.out_dir, "quantize", {"output": info, "report": "reports/quantize.json", "passed": report["passed"],
                                             "steps": result.completed_steps, "duration_s": report["duration_s"],
                                             "resumed_from_step": result.resumed_from_step})
    return report


def run_export(
    config: RunConfig, *, source: str = "quantize", model_dir: Path | None = None, overwrite: bool = False,
    check_deepsparse: bool = True, evaluate: bool = True,
) -> dict[str, Any]:
    """ONNX export of the quantized (or only pruned) model through the one export path, with verification."""
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
        verification.update(verify_model_dir(staged, model, raise_on_failure=True, published_as=out_dir,
                                             check_deepsparse=check_deepsparse, accuracy=accuracy))

    export_model_dir(model, out_dir, tokenizer=tokenizer, sequence_length=384, quantized=quantized,
                     manifest=manifest, overwrite=overwrite, extra_files=extra_files, before_publish=verify_staged,
                     packed_variant=True)
    onnx_eval = verification["checks"]["f1_vs_torch"].get("onnx")
    checks = {name: {"passed": c["passed"], **{k: v for k, v in c.items() if k != "passed"}}
              for name, c in verification["checks"].items()}
    report = {
        "step": "export",
        "created_utc": _now(),
        "preset": config.preset.name,
        "notes": notes,
        "model_dir": str(out_dir),
        "source": str(stage_model),
        "quantized": quantized,
        "manifest": manifest,
        "verification": {k: v for k, v in verification.items() if k != "checks"},
        "checks": checks,
        "evaluation": {"onnx": onnx_eval},
        "duration_s": round(time.perf_counter() - started, 2),
    }
    write_report(config.out_dir, "export", report)
    record_step(config.out_dir, "export", {"model_dir": str(out_dir), "report": "reports/export.json",
                                           "passed": report["passed"], "duration_s": report["duration_s"]})
    return report


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

    def evaluate(onnx_path: Path) -> dict[str, Any]:
        started = time.perf_counter()
        logits = onnx_logits(onnx_path, features, progress=config.progress, threads=config.threads)
        result = {**score_logits(features, logits), "eval_json": str(eval_json), "engine": "onnxruntime",
                  "window": "384/128 (MLPerf)", "seconds": round(time.perf_counter() - started, 2)}
        log.info("exported model (ONNX Runtime): F1 %.2f, EM %.2f on %d questions (PyTorch: F1 %.2f)", result["f1"],
                 result["exact_match"], result["questions"], reference["f1"])
        return result

    return AccuracyCheck(reference=reference, evaluate=evaluate)


def run_smoke(config: RunConfig, *, overwrite: bool = True, check_deepsparse: bool = True) -> dict[str, Any]:
    """teacher (cached) -> prune -> quantize -> export with the smoke preset; returns a summary."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    teacher_dir = ensure_smoke_teacher(config, dataset_files(config).vocab)
    timings["teacher"] = round(time.perf_counter() - t0, 2)
    reports = {}
    for name, run in (("prune", lambda: run_prune(config, model_spec=str(teacher_dir), teacher_spec=str(teacher_dir))),
                      ("quantize", lambda: run_quantize(config, teacher_spec=str(teacher_dir))),
                      ("export", lambda: run_export(config, overwrite=overwrite, check_deepsparse=check_deepsparse))):
        t0 = time.perf_counter()
        reports[name] = run()
        timings[name] = round(time.perf_counter() - t0, 2)
    summary = {
        "preset": config.preset.name,
        "out_dir": str(config.out_dir),
        "model_dir": reports["export"]["model_dir"],
        "passed": all(r["passed"] for r in reports.values()),
        "failed": {name: r["failed_checks"] for name, r in reports.items() if not r["passed"]},
        "timings_s": {**timings, "total": round(time.perf_counter() - started, 2)},
        "evaluation": {
            "teacher": reports["prune"]["evaluation"]["teacher"],
            "pruned": reports["prune"]["evaluation"]["pruned"],
            "qat": reports["quantize"]["evaluation"]["qat"],
            "onnx": reports["export"]["evaluation"]["onnx"],
        },
        "notes": reports["prune"]["notes"],
    }
    (config.out_dir / "reports" / "smoke.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
