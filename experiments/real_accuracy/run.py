"""The real-accuracy experiment from end to end (:func:`run_real_accuracy`): run or continue it, write its results."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from compression.data import split_dev_by_article
from compression.errors import CompressionError
from compression.steps import RunConfig
from compression.steps.data import dataset_files
from experiments.real_accuracy.config import (
    PLOT_FILE,
    RESULTS_FILE,
    SPARSITY_PLOT_FILE,
    TABLE_FILE,
    RealAccuracyConfig,
    pipeline_preset,
    row_label,
)
from experiments.real_accuracy.harness_driver import heldout_windows, run_harness_phase, write_heldout_data_dir
from experiments.real_accuracy.results import summarize
from experiments.real_accuracy.stages import (
    ensure_teacher,
    export_run,
    export_teacher,
    heldout_torch_scores,
    prune_run,
    quantize_run,
)
from experiments.real_accuracy.tables import plot_f1_vs_sparsity, plot_results, results_table

def run_real_accuracy(config: RealAccuracyConfig, *, out_dir: Path, data_dir: Path | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """Run (or continue) the experiment; writes ``real_accuracy.json``/``.md``/``.png`` into ``out_dir``."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if config.quantize_sparsity not in config.sparsities or "obs" not in config.methods:
        # said before hours of training, not after them
        raise CompressionError(f"the QAT row needs the oBERT model at {config.quantize_sparsity:g} sparsity: "
                               f"sparsities {', '.join(f'{s:g}' for s in config.sparsities)} and methods "
                               f"{', '.join(config.methods)} must include {config.quantize_sparsity:g} and obs")
    base_run = RunConfig(preset=pipeline_preset(config, None, max_windows=config.teacher_max_windows), out_dir=out_dir,
                         data_dir=data_dir, device="cpu", progress=progress, max_train_questions=config.max_train_questions)
    files = dataset_files(base_run)
    if not files.official:
        raise CompressionError(f"{files.dev_json}: the experiment needs the official SQuAD v1.1 dev set and the "
                               "bert-base-uncased vocab (--data-dir or $OBERT_DATA_DIR)")
    torch.set_num_threads(config.threads)
    teacher_dir, teacher_info = ensure_teacher(config, base_run, files.vocab, out_dir)

    # every run at the first sparsity (all methods, all seeds) and its QAT before any run at the next
    pruned: dict[tuple[str, float, int], tuple[Path, dict[str, Any]]] = {}
    qat_key = ("obs", config.quantize_sparsity, config.seeds[0])
    qat_report: dict[str, Any] | None = None
    for sparsity in sorted(config.sparsities):
        for seed in config.seeds_for(sparsity):
            for method in config.methods:
                pruned[(method, sparsity, seed)] = prune_run(config, teacher_dir, method, sparsity, seed, out_dir,
                                                             data_dir, progress)
        if qat_key in pruned and qat_report is None:
            qat_report = quantize_run(config, teacher_dir, pruned[qat_key][0], data_dir, progress)
    assert qat_report is not None  # checked on entry
    qat_dir = pruned[qat_key][0]

    models: dict[str, Path] = {"dense FP32": export_teacher(teacher_dir, teacher_info, out_dir)}
    for (method, sparsity, seed), (run_dir, _) in pruned.items():
        if seed == config.seeds[0]:
            models[row_label(method, sparsity)] = export_run(config, run_dir, "prune", data_dir, progress)
    int8_label = f"oBERT {round(100 * config.quantize_sparsity)}% INT8"
    models[int8_label] = export_run(config, qat_dir, "quantize", data_dir, progress)

    # the held-out articles, read from here on only: the PyTorch models and the harness score the same questions
    split = split_dev_by_article(files.dev_json, out_dir / "data", validation_articles=config.validation_articles)
    data = write_heldout_data_dir(split.heldout_json, files.vocab, out_dir / "heldout-data", config.harness_max_questions)
    heldout = heldout_torch_scores(config, teacher_dir, pruned, qat_dir, data / "dev-v1.1.json", base_run, out_dir)

    harness: dict[str, dict[str, Any]] = {}
    if config.harness:
        windows = heldout_windows(data, out_dir)
        harness = run_harness_phase(models, config, data, out_dir, windows, int8_label, progress)

    results = summarize(config, teacher_info, pruned, qat_report, models, harness, int8_label, heldout)
    results["table_markdown"] = results_table(results)
    results["duration_s"] = round(time.perf_counter() - started, 1)
    (out_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / TABLE_FILE).write_text(results["table_markdown"] + "\n")
    plot_results(results, out_dir / PLOT_FILE)
    plot_f1_vs_sparsity(results, out_dir / SPARSITY_PLOT_FILE)
    return results
