"""Untrained benchmark models: the real oBERT-MobileBERT geometry, sparsity and precision, random weights.

They let the harness measure real speed offline, before (or without) the trained model. Accuracy
measured with them is meaningless, and every artifact says so (manifest ``trained: false`` + warning,
README, directory name suffix ``-untrained``).

Variants:

* ``sparse-int8`` (the harness default): encoder layers dropped as the compression recipe's
  LayerPruningModifier says (14 of 24), 4-block sparsity at the OBSPruningModifier's final sparsity
  (50%, global ranking) on exactly the parameters it lists, INT8 QAT graph from the quantization recipe.
* ``dense-fp32``: the same 14 layers, dense, FP32 (isolates what sparsity + INT8 buy).
* ``dense-fp32-24l``: all 24 layers, dense, FP32: the uncompressed baseline.

The steps reuse the pipeline's building blocks (architecture, recipes, sparsity, quantize, export,
verify); only the pruning scores differ from the trained pipeline (magnitude instead of OBS).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from compression.architecture import (
    DEFAULT_PRESET,
    build_model,
    drop_layers,
    encoder_layer_count,
    get_preset,
)
from compression.errors import CompressionError, OutputExistsError, RecipeError
from compression.families import geometry_summary
from compression.export import ONNX_OPSET, export_model_dir, load_vocab_tokenizer
from compression.quantize import prepare_qat
from compression.recipes import (
    COMPRESSION_RECIPE,
    QUANTIZATION_RECIPE,
    derive_recipe,
    kept_layer_count,
    load_recipe,
    match_params,
    PruningTarget,
    pruned_param_patterns,
    pruning_target,
)
from compression.sparsity import apply_masks, block4_magnitude_masks, plot_sparsity_heatmap, sparsity_report
from compression.synthetic import synthetic_qa_batches

log = logging.getLogger(__name__)

DEFAULT_VARIANT = "sparse-int8"
DERIVED_QUANT_RECIPE_FILE = "quantization_recipe.yaml"
SPARSITY_REPORT_FILE = "sparsity_report.json"
SPARSITY_HEATMAP_FILE = "sparsity_heatmap.png"
# Observer calibration: enough tokens for stable min/max ranges, cheap on 2 CPU cores.
CALIBRATION_BATCHES = 2
CALIBRATION_BATCH_SIZE = 4

BLOCK4_DESCRIPTION = (
    "block4: blocks of 4 consecutive weights along the input dimension of each weight row, aligned to "
    "multiples of 4; each block is entirely zero or entirely kept (sparseml FourBlockMaskCreator)"
)


@dataclass(frozen=True)
class BenchmarkVariant:
    name: str
    drop_layers: bool
    sparse: bool
    quantized: bool
    dir_template: str
    summary: str
    final_sparsity: float | None = None  # None: the compression recipe's final sparsity


VARIANTS: dict[str, BenchmarkVariant] = {
    "sparse-int8": BenchmarkVariant(
        "sparse-int8", drop_layers=True, sparse=True, quantized=True,
        dir_template="obert-mobilebert-{layers}l-{pct}pct-{pattern}-int8-untrained",
        summary="oBERT-MobileBERT: layer-dropped, 4-block sparse, INT8 (the harness default)",
    ),
    # The paper's higher-sparsity point, for engines whose sparse-weight kernels need more zeros to pay off
    # (OpenVINO's CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE on AMX).
    "sparse80-int8": BenchmarkVariant(
        "sparse80-int8", drop_layers=True, sparse=True, quantized=True,
        dir_template="obert-mobilebert-{layers}l-{pct}pct-{pattern}-int8-untrained",
        summary="oBERT-MobileBERT: layer-dropped, 80% 4-block sparse, INT8", final_sparsity=0.8,
    ),
    "dense-fp32": BenchmarkVariant(
        "dense-fp32", drop_layers=True, sparse=False, quantized=False,
        dir_template="mobilebert-{layers}l-dense-fp32-untrained",
        summary="MobileBERT, layer-dropped, dense, FP32",
    ),
    "dense-fp32-24l": BenchmarkVariant(
        "dense-fp32-24l", drop_layers=False, sparse=False, quantized=False,
        dir_template="mobilebert-{layers}l-dense-fp32-untrained",
        summary="MobileBERT, all layers, dense, FP32 (uncompressed baseline)",
    ),
}


def get_variant(variant: str) -> BenchmarkVariant:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise CompressionError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}") from None


def variant_pruning_target(spec: BenchmarkVariant, recipe) -> PruningTarget:
    """The recipe's pruning target, at the variant's own final sparsity where it sets one."""
    target = pruning_target(recipe)
    return target if spec.final_sparsity is None else replace(target, final_sparsity=spec.final_sparsity)


def layers_to_keep(preset: str = DEFAULT_PRESET) -> int:
    """Encoder layers the layer-dropped variants keep.

    For the real geometry this is read from the recipes' LayerPruningModifier (both recipes must agree);
    the tiny preset has its own scaled-down count.
    """
    geometry = get_preset(preset)
    if geometry.kept_layers is not None:
        return geometry.kept_layers
    counts = {name: kept_layer_count(load_recipe(name)) for name in (COMPRESSION_RECIPE, QUANTIZATION_RECIPE)}
    if len(set(counts.values())) != 1:
        raise RecipeError(f"the recipes disagree on how many layers to keep: {counts}")
    keep = next(iter(counts.values()))
    if keep > geometry.num_layers:
        raise RecipeError(f"the recipes keep {keep} layers but preset {preset!r} has only {geometry.num_layers}")
    return keep


def default_model_dir(variant: str = DEFAULT_VARIANT, root: Path = Path("models"), preset: str = DEFAULT_PRESET) -> Path:
    """Default directory for a variant, e.g. ``models/obert-mobilebert-14l-50pct-block4-int8-untrained``.

    Presets other than the real geometry get a ``-<preset>`` suffix so they never shadow the real models.
    """
    spec = get_variant(variant)
    layers = layers_to_keep(preset) if spec.drop_layers else get_preset(preset).num_layers
    target = variant_pruning_target(spec, load_recipe(COMPRESSION_RECIPE))
    name = spec.dir_template.format(layers=layers, pct=round(100 * target.final_sparsity), pattern=target.mask_type)
    if preset != DEFAULT_PRESET:
        name += f"-{preset}"
    return Path(root) / name


@dataclass
class PreparedModel:
    """A benchmark model ready for export, plus what export_model_dir needs to describe it."""

    model: torch.nn.Module
    variant: BenchmarkVariant
    manifest: dict[str, Any]
    extra_files: dict[str, Path] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)


class _StepTimer:
    """Logs each build step with its duration and advances a progress bar."""

    def __init__(self, total: int, description: str, progress: bool = True) -> None:
        self.timings: dict[str, float] = {}
        self.bar = tqdm(total=total, desc=description, unit="step", leave=False, disable=not progress)

    def run(self, name: str, fn, *args, **kwargs):
        self.bar.set_postfix_str(name)
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        self.timings[name] = round(time.perf_counter() - started, 2)
        log.info("%-10s done in %.1f s", name, self.timings[name])
        self.bar.update()
        return result

    def close(self) -> None:
        self.bar.close()


def prepare_benchmark_model(
    variant: str = DEFAULT_VARIANT,
    *,
    preset: str = DEFAULT_PRESET,
    seed: int = 42,
    work_dir: Path,
    progress: bool = True,
) -> PreparedModel:
    """Build, layer-drop, prune and quantize as ``variant`` says; side files go to ``work_dir``. ``progress``: the
    progress bars of the steps and of the calibration."""
    spec = get_variant(variant)
    compression_recipe = load_recipe(COMPRESSION_RECIPE)
    steps_total = 1 + spec.drop_layers + spec.sparse + spec.quantized
    timer = _StepTimer(steps_total, f"build {variant}", progress=progress)
    steps: list[str] = []
    try:
        model = timer.run("init", build_model, preset, seed=seed)
        original_layers = encoder_layer_count(model)
        steps.append(f"random initialisation (seed {seed}) of the {preset} geometry with {original_layers} encoder layers")

        if spec.drop_layers:
            keep = layers_to_keep(preset)
            timer.run("drop", drop_layers, model, keep)
            steps.append(
                f"layer dropping: kept encoder layers 0..{keep - 1} of {original_layers} "
                f"(the LayerPruningModifier of {COMPRESSION_RECIPE}, applied directly)"
            )

        patterns = pruned_param_patterns(compression_recipe)
        param_names = match_params(model, patterns)
        target = variant_pruning_target(spec, compression_recipe)
        sparsity_target = target.final_sparsity if spec.sparse else 0.0
        if spec.sparse:
            if target.mask_type != "block4":
                raise RecipeError(f"{COMPRESSION_RECIPE}: mask_type {target.mask_type!r} is not supported (block4 only)")

            def prune() -> dict[str, Any]:
                masks = block4_magnitude_masks(model, param_names, target.final_sparsity, global_=target.global_sparsity)
                apply_masks(model, masks)
                return sparsity_report(model, param_names)

            report = timer.run("prune", prune)
            steps.append(
                f"pruning: {100 * report['global_sparsity']:.2f}% {'global ' if target.global_sparsity else ''}"
                f"4-block sparsity by block magnitude (untrained stand-in for OBS scores) over the "
                f"{len(param_names)} parameters listed by the OBSPruningModifier of {COMPRESSION_RECIPE}"
            )
        else:
            report = sparsity_report(model, param_names)

        derived_recipe = None
        if spec.quantized:
            derived_recipe = derive_recipe(
                QUANTIZATION_RECIPE,
                work_dir / DERIVED_QUANT_RECIPE_FILE,
                drop_layer_pruning=True,
                reason="encoder layers were already dropped, so the LayerPruningModifier's layers do not exist",
            )
            batches = synthetic_qa_batches(
                CALIBRATION_BATCHES, CALIBRATION_BATCH_SIZE, vocab_size=model.config.vocab_size, seed=seed
            )
            timer.run("quantize", prepare_qat, model, derived_recipe, calibration_batches=batches, one_shot=True,
                      progress=progress)
            after = sparsity_report(model, match_params(model, patterns))  # names now include QAT wrappers
            if after["zero_weights"] != report["zero_weights"]:
                raise CompressionError("QAT preparation changed the pruned weights; masks were not preserved")
            steps.append(
                f"quantization: INT8 QAT graph by sparseml's QuantizationModifier from {QUANTIZATION_RECIPE} "
                f"(derived copy {DERIVED_QUANT_RECIPE_FILE} without its LayerPruningModifier); observers calibrated "
                f"on {CALIBRATION_BATCHES * CALIBRATION_BATCH_SIZE} synthetic SQuAD-shaped sequences, then frozen"
            )
    finally:
        timer.close()

    extra_files: dict[str, Path] = {}
    if derived_recipe is not None:
        extra_files[DERIVED_QUANT_RECIPE_FILE] = derived_recipe
    report_path = work_dir / SPARSITY_REPORT_FILE
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    extra_files[SPARSITY_REPORT_FILE] = report_path
    if spec.sparse:
        extra_files[SPARSITY_HEATMAP_FILE] = plot_sparsity_heatmap(report, work_dir / SPARSITY_HEATMAP_FILE)
    conversion = (" with QAT converted to INT8 operators, and the same model in QDQ form (model-qdq.onnx)"
                  if spec.quantized else "")
    steps.append(f"export: ONNX opset {ONNX_OPSET} via sparseml's exporter{conversion}")

    num_layers = encoder_layer_count(model)
    manifest: dict[str, Any] = {
        "name": default_model_dir(variant, preset=preset).name,
        "variant": variant,
        "description": f"{spec.summary}. UNTRAINED: random weights, {num_layers} encoder layers.",
        "trained": False,
        "preset": preset,
        "geometry": geometry_summary(model.config),
        "num_layers": num_layers,
        "num_layers_original": original_layers,
        "seed": seed,
        "sparsity": round(report["global_sparsity"], 6),
        "block_pattern": target.mask_type if spec.sparse else None,
        "sparsity_details": {
            "target": sparsity_target,
            "achieved": report["global_sparsity"],
            "block_sparsity": report["block_sparsity"],
            "block4_aligned": report["block4_aligned"],
            "pattern_description": BLOCK4_DESCRIPTION if spec.sparse else None,
            "global_ranking": target.global_sparsity if spec.sparse else None,
            "scoring": "block mean |w| (magnitude)" if spec.sparse else None,
            "num_weights": report["total_weights"],
            "param_patterns": patterns,
            "params": [*report["params"]],
        },
        "steps": steps,
        "recipes": {"compression": COMPRESSION_RECIPE, "quantization": QUANTIZATION_RECIPE if spec.quantized else None},
        "build_timings_s": timer.timings,
    }
    return PreparedModel(model, spec, manifest, extra_files, timer.timings)


@dataclass
class BuildResult:
    """What :func:`build_benchmark_model_detailed` produced."""

    out_dir: Path
    prepared: PreparedModel
    verification: dict[str, Any] | None


def build_benchmark_model(
    out_dir: Path,
    *,
    vocab: Path | None,
    variant: str = DEFAULT_VARIANT,
    seed: int = 42,
    preset: str = DEFAULT_PRESET,
    sequence_length: int = 384,
    overwrite: bool = False,
    verify: bool = True,
    packed_variant: bool = True,
    progress: bool = True,
) -> Path:
    """Build an untrained benchmark model directory and return its path.

    ``vocab``: the WordPiece vocabulary whose tokenizer files go into the directory (its size must be the
    geometry's vocab_size); None writes no tokenizer files (the manifest says so), for a model built before
    the real vocabulary is at hand.

    With ``verify`` the staged directory is checked (:func:`compression.verify.verify_model_dir`, which
    writes ``verify.json``) before it is moved into place; a failed check publishes nothing.
    ``packed_variant``: also the packed-input variant (``model-packed.onnx``, for the harness's --packing).
    ``progress``: the build's progress bars.
    """
    return build_benchmark_model_detailed(
        out_dir, vocab=vocab, variant=variant, seed=seed, preset=preset, sequence_length=sequence_length,
        overwrite=overwrite, verify=verify, packed_variant=packed_variant, progress=progress,
    ).out_dir


def build_benchmark_model_detailed(
    out_dir: Path,
    *,
    vocab: Path | None,
    variant: str = DEFAULT_VARIANT,
    seed: int = 42,
    preset: str = DEFAULT_PRESET,
    sequence_length: int = 384,
    overwrite: bool = False,
    verify: bool = True,
    packed_variant: bool = True,
    progress: bool = True,
) -> BuildResult:
    """:func:`build_benchmark_model`, also returning the PyTorch model and the verification result."""
    from compression.verify import verify_model_dir

    out_dir = Path(out_dir)
    started = time.perf_counter()
    spec = get_variant(variant)
    # Fail on a bad vocabulary or an occupied output directory before minutes of work, not after.
    tokenizer = (None if vocab is None
                 else load_vocab_tokenizer(Path(vocab), vocab_size=int(get_preset(preset).config["vocab_size"])))
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise OutputExistsError(
            f"output directory {out_dir} already exists and is not empty; pass overwrite=True "
            "(obert-compress: --overwrite) to replace it"
        )
    log.info("building %s benchmark model (%s, preset %s, seed %d) -> %s", variant, spec.summary, preset, seed, out_dir)
    verification: dict[str, Any] = {}

    def verify_staged(staged: Path) -> None:
        verification.update(verify_model_dir(staged, prepared.model, raise_on_failure=True, published_as=out_dir))

    with tempfile.TemporaryDirectory(prefix="obert-benchmark-") as work:
        prepared = prepare_benchmark_model(variant, preset=preset, seed=seed, work_dir=Path(work), progress=progress)
        export_started = time.perf_counter()
        export_model_dir(
            prepared.model,
            out_dir,
            tokenizer=tokenizer,
            sequence_length=sequence_length,
            quantized=spec.quantized,
            manifest=prepared.manifest,
            overwrite=overwrite,
            extra_files=prepared.extra_files,
            before_publish=verify_staged if verify else None,
            packed_variant=packed_variant,
        )
        log.info("export%s took %.1f s", " + verification" if verify else "", time.perf_counter() - export_started)
    log.info("built %s in %.1f s", out_dir, time.perf_counter() - started)
    return BuildResult(out_dir, prepared, verification or None)
