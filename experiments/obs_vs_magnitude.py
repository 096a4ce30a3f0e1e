"""Experiment ``obs-vs-magnitude``: is the second-order (oBERT) machinery really at work?
(``python -m experiments obs-vs-magnitude``)

A small dense MobileBERT (the ``tiny`` geometry, 4 layers) is trained from scratch on the dev-train split,
then pruned hard to the same 4-block sparsity twice per seed, from the same dense weights, with the same
recipe except for the pruning modifier:

* ``obs``: the compression recipe's ``OBSPruningModifier`` (block4, global, Fisher block 4, damp 1e-8,
  fewer gradients than the published 512 to fit a CPU);
* ``magnitude``: sparseml's ``GlobalMagnitudePruningModifier`` with ``mask_type: block4`` and identical
  ``params``, sparsities, epochs, update frequency and interpolation.

Everything else is shared: distillation from the dense model (hardness 1.0, T 5.5), frozen embeddings,
the LR schedule, data order (seed), batch size. Held-out loss (start/end cross-entropy) and F1/EM on the
held-out dev articles are compared. No layers are dropped, so the comparison isolates the pruning rule.

The split is NOT the standard benchmark and the model is tiny: the absolute numbers mean nothing; the
comparison between the two methods under identical conditions is the point.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cmdline.provenance import provenance, provenance_line
from compression.architecture import build_model
from compression.checkpoints import load_qa_model, save_checkpoint_dir
from compression.dev_split import DEV_SPLIT_NOTE
from compression.export import load_vocab_tokenizer
from compression.presets import PipelinePreset
from compression.recipes import (
    COMPRESSION_RECIPE,
    SHARED_PRUNING_FIELDS,
    dense_recipe,
    derive_recipe,
    dump_recipe,
    find_modifiers,
    load_recipe,
    match_params,
    pruned_param_patterns,
    swap_obs_for_magnitude,
)
from compression.sparsity import sparsity_report
from compression.steps.config import RunConfig
from compression.steps.data import dataset_files, evaluate_model, prepare_data
from compression.train import TrainSettings, train_with_recipe
from compression.train_checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILE
from compression.train_features import WindowParams
from squad.features import FeatureParams

log = logging.getLogger(__name__)

RESULTS_STEM = "obs_vs_magnitude"  # + "-<sparsity>pct.json" / ".md": one pair per sparsity, one cached dense model


@dataclass(frozen=True)
class ExperimentConfig:
    geometry: str = "tiny"
    window: WindowParams = WindowParams(max_seq_length=128, doc_stride=32)
    eval_params: FeatureParams = FeatureParams(max_seq_length=128, doc_stride=64, max_query_length=32)
    batch_size: int = 16
    dense_seed: int = 42
    dense_epochs: float = 2.0
    dense_learning_rate: float = 1e-3
    dense_max_questions: int | None = None  # all 8,839 training questions
    prune_max_questions: int | None = 800
    prune_windows: int = 1280  # 80 steps per epoch
    epoch_scale: float = 0.125  # the recipe's 30 epochs -> 3.75 (300 steps); 14 pruning steps, every 20 steps
    init_sparsity: float = 0.25
    final_sparsity: float = 0.8
    num_grads: int = 64
    max_eval_windows: int | None = 2000
    threads: int = 1

    @staticmethod
    def default(quick: bool = False) -> ExperimentConfig:
        if not quick:
            return ExperimentConfig()
        return ExperimentConfig(dense_epochs=1.0, dense_max_questions=120, prune_max_questions=80, prune_windows=128,
                                num_grads=8, max_eval_windows=200)

    def with_sparsity(self, sparsity: float) -> ExperimentConfig:
        return replace(self, final_sparsity=sparsity)


def _preset(config: ExperimentConfig, max_windows: int | None) -> PipelinePreset:
    return PipelinePreset(
        name="experiment", description="obs-vs-magnitude", model=None, teacher=None, geometry=config.geometry,
        train_data="dev-split", window=config.window, eval_params=config.eval_params, batch_size=config.batch_size,
        max_train_windows=max_windows, max_eval_windows=config.max_eval_windows, trim_padding=True,
        threads=config.threads,
    )


def magnitude_recipe(obs_recipe_path: Path, out_path: Path) -> Path:
    """The OBS recipe with its OBSPruningModifier swapped for a block4 GlobalMagnitudePruningModifier that
    has the same parameters and schedule."""
    recipe = load_recipe(obs_recipe_path)
    change = swap_obs_for_magnitude(recipe)
    out_path.write_text(dump_recipe(recipe, header=f"{obs_recipe_path.name}: {change}"))
    return out_path


def _ensure_dense(config: ExperimentConfig, run: RunConfig, vocab: Path, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    model_dir = out_dir / "dense" / "model"
    info_path = model_dir / "dense.json"
    fingerprint = {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in
                   (("geometry", config.geometry), ("window", config.window), ("seed", config.dense_seed),
                    ("epochs", config.dense_epochs), ("lr", config.dense_learning_rate),
                    ("questions", config.dense_max_questions), ("batch_size", config.batch_size))}
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == fingerprint:
            return model_dir, info
    tokenizer = load_vocab_tokenizer(vocab, vocab_size=30522)
    dense_run = replace(run, preset=_preset(config, None), max_train_questions=config.dense_max_questions)
    data = prepare_data(dense_run, tokenizer)
    model = build_model(config.geometry, seed=config.dense_seed).train()
    recipe_path = out_dir / "dense" / "recipe.yaml"
    recipe_path.parent.mkdir(parents=True, exist_ok=True)
    recipe_path.write_text(dump_recipe(dense_recipe(config.dense_epochs, config.dense_learning_rate),
                                       header="dense training of the experiment's starting model"))
    settings = TrainSettings(batch_size=config.batch_size, seed=config.dense_seed, learning_rate=config.dense_learning_rate,
                             trim_padding=True, num_threads=config.threads, progress=run.progress)
    result = train_with_recipe(model, recipe_path, data.train_features, out_dir / "dense", settings, description="dense",
                               resume=_can_resume(out_dir / "dense", fingerprint))
    evaluation = evaluate_model(model, data, dense_run, "dense model")
    info = {"fingerprint": fingerprint, "steps": result.completed_steps, "windows": len(data.train_features),
            "duration_s": result.duration_s, "evaluation": evaluation}
    save_checkpoint_dir(model, tokenizer, model_dir, info)
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return model_dir, info


def run_obs_vs_magnitude(
    config: ExperimentConfig, *, out_dir: Path, data_dir: Path | None = None, seeds: list[int] = (0, 1, 2),
    threads: int | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Run the experiment; writes ``obs_vs_magnitude-<pct>pct.json`` and ``.md`` into ``out_dir`` and returns the
    results. The dense starting model is cached in ``out_dir/dense`` and shared by runs at other sparsities."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if threads:
        config = replace(config, threads=threads)
    run = RunConfig(preset=_preset(config, config.prune_windows), out_dir=out_dir, data_dir=data_dir, device="cpu",
                    progress=progress, max_train_questions=config.prune_max_questions)
    vocab = dataset_files(run).vocab
    dense_dir, dense_info = _ensure_dense(config, run, vocab, out_dir)

    tokenizer = load_vocab_tokenizer(vocab, vocab_size=30522)
    data = prepare_data(run, tokenizer)
    tag = f"{round(100 * config.final_sparsity)}pct"
    recipes_dir = out_dir / "recipes" / tag
    recipes_dir.mkdir(parents=True, exist_ok=True)
    obs_recipe = derive_recipe(
        COMPRESSION_RECIPE, recipes_dir / "obs.yaml", drop_layer_pruning=True, epoch_scale=config.epoch_scale,
        overrides={"OBSPruningModifier": {"init_sparsity": config.init_sparsity, "final_sparsity": config.final_sparsity,
                                          "num_grads": config.num_grads}},
        reason="obs-vs-magnitude experiment: no layer dropping, harder final sparsity, CPU-sized gradient count",
    )
    recipes = {"obs": obs_recipe, "magnitude": magnitude_recipe(obs_recipe, recipes_dir / "magnitude.yaml")}
    patterns = pruned_param_patterns(load_recipe(COMPRESSION_RECIPE))
    teacher = load_qa_model(dense_dir, role="teacher").eval()

    runs: list[dict[str, Any]] = []
    for seed in seeds:
        for method, recipe_path in recipes.items():
            run_dir = out_dir / "runs" / tag / f"{method}-seed{seed}"
            run_fingerprint = {"recipe": recipe_path.read_text(), "dense": dense_info.get("fingerprint"), "seed": seed,
                               "batch_size": config.batch_size, "windows": len(data.train_features)}
            cached = _cached_run_result(run_dir, run_fingerprint)
            if cached is not None:
                log.info("%s seed %d: result of an earlier invocation reused (%s)", method, seed, run_dir / RUN_RESULT_FILE)
                runs.append(cached)
                continue
            run_started = time.perf_counter()
            student = copy.deepcopy(teacher).train()
            for param in student.parameters():
                param.requires_grad_(True)
            settings = TrainSettings(batch_size=config.batch_size, seed=seed, learning_rate=1e-4, trim_padding=True,
                                     num_threads=config.threads, progress=progress)
            result = train_with_recipe(student, recipe_path, data.train_features, run_dir, settings, teacher=teacher,
                                       sparsity_patterns=patterns, description=f"{method} seed {seed}",
                                       resume=_can_resume(run_dir, run_fingerprint))
            report = sparsity_report(student, match_params(student, patterns))
            evaluation = evaluate_model(student, data, run, f"{method} seed {seed}")
            runs.append({
                "method": method, "seed": seed, "heldout_loss": evaluation["loss"], "f1": evaluation["f1"],
                "exact_match": evaluation["exact_match"], "sparsity": report["global_sparsity"],
                "block4_aligned": report["block4_aligned"],
                "final_train_distill_loss": result.trace[-1]["distill_loss"], "steps": result.completed_steps,
                "duration_s": round(time.perf_counter() - run_started, 1),
            })
            (run_dir / RUN_RESULT_FILE).write_text(json.dumps({"fingerprint": run_fingerprint, "result": runs[-1]}) + "\n")
            log.info("%s seed %d: held-out loss %.4f, F1 %.2f, sparsity %.4f", method, seed, evaluation["loss"],
                     evaluation["f1"], report["global_sparsity"])

    summary = {}
    for method in recipes:
        rows = [r for r in runs if r["method"] == method]
        summary[method] = {key: {"mean": statistics.fmean(r[key] for r in rows),
                                 "stdev": statistics.stdev(r[key] for r in rows) if len(rows) > 1 else 0.0}
                           for key in ("heldout_loss", "f1", "exact_match", "final_train_distill_loss")}
    wins = {key: sum(1 for seed in seeds if _better(key, _pick(runs, "obs", seed)[key], _pick(runs, "magnitude", seed)[key]))
            for key in ("heldout_loss", "f1")}
    obs_fields = find_modifiers(load_recipe(obs_recipe), "OBSPruningModifier")[0].fields
    results = {
        "provenance": provenance(),
        "experiment": "obs-vs-magnitude",
        "note": DEV_SPLIT_NOTE + "; tiny model trained from scratch: compare the methods, not the absolute numbers",
        "config": {**{k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in asdict(config).items()},
                   "seeds": list(seeds)},
        "pruning": {"obs": {k: obs_fields[k] for k in obs_fields if k != "params"},
                    "magnitude": "GlobalMagnitudePruningModifier with the shared fields " + ", ".join(SHARED_PRUNING_FIELDS),
                    "steps_per_run": runs[0]["steps"] if runs else None},
        "dense": {"model": str(dense_dir), **{k: dense_info.get(k) for k in ("steps", "windows", "evaluation")}},
        "data": data.describe(),
        "runs": runs,
        "summary": summary,
        "obs_better_in_seeds": wins,
        "duration_s": round(time.perf_counter() - started, 1),
        "recipes": {k: str(v) for k, v in recipes.items()},
    }
    results["table_markdown"] = results_table(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    results["files"] = {"json": str(out_dir / f"{RESULTS_STEM}-{tag}.json"),
                        "table": str(out_dir / f"{RESULTS_STEM}-{tag}.md")}
    Path(results["files"]["json"]).write_text(json.dumps(results, indent=2) + "\n")
    Path(results["files"]["table"]).write_text(results["table_markdown"] + "\n")
    return results


RUN_RESULT_FILE = "result.json"
FINGERPRINT_FILE = "fingerprint.json"


def _can_resume(work_dir: Path, fingerprint: dict[str, Any]) -> bool:
    """True when ``work_dir`` holds a checkpoint of a run with this exact configuration (an interrupted
    experiment continues where it stopped); otherwise records the fingerprint for the fresh run."""
    fingerprint_path = work_dir / FINGERPRINT_FILE
    same = fingerprint_path.is_file() and json.loads(fingerprint_path.read_text()) == json.loads(json.dumps(fingerprint))
    if same and (work_dir / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file():
        return True
    work_dir.mkdir(parents=True, exist_ok=True)
    fingerprint_path.write_text(json.dumps(fingerprint) + "\n")
    return False


def _cached_run_result(run_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    path = run_dir / RUN_RESULT_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved["result"] if saved.get("fingerprint") == json.loads(json.dumps(fingerprint)) else None


def _pick(runs: list[dict[str, Any]], method: str, seed: int) -> dict[str, Any]:
    return next(r for r in runs if r["method"] == method and r["seed"] == seed)


def _better(key: str, obs: float, magnitude: float) -> bool:
    return obs < magnitude if key == "heldout_loss" else obs > magnitude


def results_table(results: dict[str, Any]) -> str:
    """Markdown table: one row per method (mean +- sd over seeds) and the per-seed values."""
    config = results["config"]
    seeds = config["seeds"]
    dense = (results["dense"].get("evaluation") or {})
    lines = ([provenance_line(results["provenance"]), ""] if results.get("provenance") else []) + [
        f"4-block sparsity {config['final_sparsity']:.0%} (global, cubic from {config['init_sparsity']:.0%}), "
        f"{results['pruning']['steps_per_run']} steps per run, seeds {', '.join(map(str, seeds))}; "
        f"held-out: {results['data']['eval_windows']} windows of the held-out dev articles.",
        "",
        "| method | held-out loss (mean ± sd) | F1 | EM | per-seed held-out loss | per-seed F1 |",
        "|---|---|---|---|---|---|",
        f"| dense (before pruning) | {dense.get('loss', float('nan')):.4f} | {dense.get('f1', float('nan')):.2f} | "
        f"{dense.get('exact_match', float('nan')):.2f} | | |",
    ]
    for method, label in (("obs", "oBERT (OBSPruningModifier)"), ("magnitude", "magnitude (GlobalMagnitudePruningModifier)")):
        stats = results["summary"][method]
        per_seed = [_pick(results["runs"], method, seed) for seed in seeds]
        lines.append(
            f"| {label} | {stats['heldout_loss']['mean']:.4f} ± {stats['heldout_loss']['stdev']:.4f} | "
            f"{stats['f1']['mean']:.2f} ± {stats['f1']['stdev']:.2f} | {stats['exact_match']['mean']:.2f} | "
            f"{', '.join(format(r['heldout_loss'], '.4f') for r in per_seed)} | "
            f"{', '.join(format(r['f1'], '.2f') for r in per_seed)} |"
        )
    wins = results["obs_better_in_seeds"]
    lines += ["", f"oBERT better than magnitude: held-out loss in {wins['heldout_loss']}/{len(seeds)} seeds, "
                  f"F1 in {wins['f1']}/{len(seeds)} seeds.", "", f"_{results['note']}_"]
    return "\n".join(lines)
