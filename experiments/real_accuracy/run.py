"""The real-accuracy experiment from end to end (:func:`run_real_accuracy`): run or continue it, one committed row
per finished part, then the engine comparison of the QAT's oBERT model, and the tables."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from compression.dev_split import split_dev_by_article
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
from experiments.real_accuracy.results import export_verification, exported_sparsity, summarize
from experiments.real_accuracy.rows import (
    ENGINES_SUBDIR,
    WALL_TIME_FILE,
    Part,
    RowStore,
    protocol_parts,
    wall_time,
    write_protocol_results,
)
from experiments.real_accuracy.stages import (
    HeldoutScores,
    ensure_teacher,
    export_run,
    export_teacher,
    prune_dir,
    prune_fingerprint,
    prune_run,
    quantize_fingerprint,
    quantize_run,
    scores_of,
    teacher_fingerprint,
)
from experiments.real_accuracy.tables import plot_f1_vs_sparsity, plot_results, results_table

log = logging.getLogger(__name__)


class _Experiment:
    """One invocation: what the committed rows already hold, what is left to train, and the per-row checks."""

    def __init__(self, config: RealAccuracyConfig, out_dir: Path, data_dir: Path | None, store: RowStore,
                 progress: bool) -> None:
        self.config, self.out_dir, self.data_dir, self.store, self.progress = config, out_dir, data_dir, store, progress
        self.base_run = RunConfig(preset=pipeline_preset(config, None, max_windows=config.teacher_max_windows),
                                  out_dir=out_dir, data_dir=data_dir, device="cpu", progress=progress,
                                  max_train_questions=config.max_train_questions)
        self.files = dataset_files(self.base_run)
        if not self.files.official:
            raise CompressionError(f"{self.files.dev_json}: the experiment needs the official SQuAD v1.1 dev set and "
                                   "the bert-base-uncased vocab (--data-dir or $OBERT_DATA_DIR)")
        # The held-out articles are scored (each finished model once, as its row is written) and never trained on
        # or chosen by: every choice rests on the validation articles.
        split = split_dev_by_article(self.files.dev_json, out_dir / "data",
                                     validation_articles=config.validation_articles)
        self.heldout_data = write_heldout_data_dir(split.heldout_json, self.files.vocab, out_dir / "heldout-data",
                                                   config.harness_max_questions)
        self.heldout = HeldoutScores(config, self.heldout_data / "dev-v1.1.json", self.files.vocab, out_dir, progress)
        self.windows = heldout_windows(self.heldout_data, out_dir) if config.harness else 0
        self.teacher_fp = teacher_fingerprint(config, out_dir)

    def fingerprint(self, part: Part) -> dict[str, Any]:
        if part.kind == "teacher":
            return self.teacher_fp
        pruned = prune_fingerprint(self.config, self.teacher_fp, part.method, part.sparsity, part.seed)
        return quantize_fingerprint(self.config, pruned) if part.kind == "qat" else pruned

    def committed(self, part: Part) -> dict[str, Any] | None:
        return self.store.get(part, self.fingerprint(part))

    def harness_check(self, label: str, model_dir: Path) -> dict[str, Any] | None:
        """The row's model through ``python -m harness run`` on one engine (accuracy agrees with PyTorch's)."""
        if not self.config.harness:
            return None
        backend = self.config.row_harness_backend
        one_engine = replace(self.config, harness_backends=(backend,), padded_backends=())
        [result] = run_harness_phase({label: model_dir}, one_engine, self.heldout_data, self.out_dir, self.windows,
                                     None, self.progress).values()
        return {"backend": backend, "bucketing": True, **{k: result.get(k) for k in ("f1", "exact_match", "questions")},
                "model_dir": str(model_dir)}

    def record(self, part: Part, row: dict[str, Any]) -> None:
        self.store.write(part, {"fingerprint": self.fingerprint(part), **row})
        write_protocol_results(self.store, self.config)
        self.store.commit_results(f"real-accuracy: row {part.name} (held-out F1 {row['heldout']['f1']:.2f})")

    def teacher_row(self, teacher_dir: Path, info: dict[str, Any], dense_dir: Path) -> None:
        part = Part("teacher")
        heldout = self.heldout.score("teacher", teacher_dir)
        row = self.committed(part)
        if row is not None:
            if info.get("trained_now"):  # a retrained teacher (a new machine): does it reproduce the committed one?
                again = {"heldout_f1": heldout["f1"], "validation_f1": (info.get("evaluation") or {}).get("f1"),
                         "identical": heldout["f1"] == row["heldout"]["f1"]}
                log.info("the retrained teacher %s the committed one's held-out F1 (%.2f vs %.2f)",
                         "reproduces" if again["identical"] else "does NOT reproduce", heldout["f1"], row["heldout"]["f1"])
                self.record(part, {**row, "retrained": [*row.get("retrained", []), again]})
            return
        ledger = wall_time(teacher_dir.parent / WALL_TIME_FILE) or {"seconds": info.get("duration_s")}
        self.record(part, {"heldout": heldout, "validation": scores_of(info.get("evaluation")),
                           "exported_sparsity": exported_sparsity(dense_dir), "wall_time": ledger,
                           "steps": info.get("steps"), "windows": info.get("windows"),
                           "harness": self.harness_check("dense FP32", dense_dir)})

    def pruning_row(self, part: Part, run_dir: Path, report: dict[str, Any], teacher_heldout: dict[str, Any]) -> None:
        if self.committed(part) is not None:
            return
        model_dir = export_run(self.config, run_dir, "prune", self.data_dir, self.progress)
        self.record(part, {
            "heldout": self.heldout.score(f"{part.method}|{part.sparsity}|{part.seed}", run_dir / "prune" / "model"),
            "validation": scores_of(report["evaluation"]["pruned"]),
            "pytorch_sparsity": report["sparsity_report"]["global_sparsity"],
            "exported_sparsity": exported_sparsity(model_dir), "coverage": report["data"].get("coverage"),
            "wall_time": wall_time(run_dir / "prune" / WALL_TIME_FILE) or {"seconds": report.get("duration_s")},
            "steps": report["training"]["completed_steps"], "teacher_heldout_f1": teacher_heldout["f1"],
            "harness": self.harness_check(f"{part.label} seed {part.seed}", model_dir)})

    def qat_row(self, part: Part, run_dir: Path, report: dict[str, Any], int8_dir: Path) -> None:
        if self.committed(part) is not None:
            return
        model_dir = run_dir / "quantize" / "model"
        self.record(part, {
            "heldout": self.heldout.score("qat", model_dir), "heldout_float64": self.heldout.score("qat_float64", model_dir),
            "validation": scores_of(report["evaluation"]["qat"]), "exported_sparsity": exported_sparsity(int8_dir),
            "coverage": report["data"].get("coverage"), "export_verification": export_verification(int8_dir),
            "wall_time": wall_time(run_dir / "quantize" / WALL_TIME_FILE) or {"seconds": report.get("duration_s")},
            "harness": self.harness_check(f"{part.label} seed {part.seed}", int8_dir)})


def run_real_accuracy(config: RealAccuracyConfig, *, out_dir: Path, data_dir: Path | None = None,
                      results_dir: Path | None = None, commit: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run (or continue) the experiment. Each finished part's row goes to ``results_dir`` (default
    ``<out_dir>/results``; committed to git there when ``commit``) with the protocol table regenerated from every
    row; a part whose row is committed is not trained again unless a later stage needs its model. Then the engine
    comparison (``real_accuracy.json``/``.md``/``.png`` in ``out_dir``, copied to ``<results_dir>/engines``).
    Returns the engine comparison's results with the protocol summary under ``"protocol"`` (the summary alone
    when the comparison's models are not on this machine)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if config.quantize_sparsity not in config.sparsities or "obs" not in config.methods:
        # said before hours of training, not after them
        raise CompressionError(f"the QAT row needs the oBERT model at {config.quantize_sparsity:g} sparsity: "
                               f"sparsities {', '.join(f'{s:g}' for s in config.sparsities)} and methods "
                               f"{', '.join(config.methods)} must include {config.quantize_sparsity:g} and obs")
    store = RowStore(Path(results_dir) if results_dir else out_dir / "results", commit=commit)
    torch.set_num_threads(config.threads)
    experiment = _Experiment(config, out_dir, data_dir, store, progress)
    parts = protocol_parts(config)
    qat_part = next(part for part in parts if part.kind == "qat")
    engines_committed = (store.directory / ENGINES_SUBDIR / RESULTS_FILE).is_file()
    # the QAT's oBERT model serves the QAT row and the engine comparison: retrained while either is missing, and
    # used while it is on this machine (the comparison's runs are cached there)
    need_qat_model = (experiment.committed(qat_part) is None or (config.harness and not engines_committed)
                      or prune_dir(out_dir, qat_part.method, qat_part.sparsity, qat_part.seed).is_dir())
    to_run = [part for part in parts if experiment.committed(part) is None
              or (part.kind != "teacher" and part.seed == qat_part.seed and part.method == "obs"
                  and part.sparsity == qat_part.sparsity and need_qat_model)]
    skipped = [part.name for part in parts if part not in to_run and part.kind != "teacher"]
    if skipped:
        log.info("rows committed in %s, not trained again: %s", store.directory, ", ".join(skipped))

    teacher_dir = teacher_info = dense_dir = None
    if to_run or (out_dir / "teacher" / "model" / "teacher.json").is_file():
        teacher_dir, teacher_info = ensure_teacher(config, experiment.base_run, experiment.files.vocab, out_dir)
        dense_dir = export_teacher(teacher_dir, teacher_info, out_dir)
        experiment.teacher_row(teacher_dir, teacher_info, dense_dir)
    pruned: dict[tuple[str, float, int], tuple[Path, dict[str, Any]]] = {}
    qat_report = int8_dir = None
    for part in to_run:
        if part.kind == "prune":
            assert teacher_dir is not None
            run_dir, report = prune_run(config, teacher_dir, part.method, part.sparsity, part.seed, out_dir, data_dir,
                                        progress)
            pruned[(part.method, part.sparsity, part.seed)] = run_dir, report
            experiment.pruning_row(part, run_dir, report, experiment.heldout.score("teacher", teacher_dir))
        elif part.kind == "qat":
            assert teacher_dir is not None
            run_dir = prune_dir(out_dir, part.method, part.sparsity, part.seed)
            qat_report = quantize_run(config, teacher_dir, run_dir, data_dir, progress)
            int8_dir = export_run(config, run_dir, "quantize", data_dir, progress)
            experiment.qat_row(part, run_dir, qat_report, int8_dir)

    protocol = write_protocol_results(store, config)
    qat_source = (qat_part.method, qat_part.sparsity, qat_part.seed)
    if teacher_dir is None or qat_report is None or qat_source not in pruned:
        log.info("the engine comparison's models are not on this machine and its results are committed: %s",
                 store.directory / ENGINES_SUBDIR)
        return {**protocol, "duration_s": round(time.perf_counter() - started, 1)}

    # The engine comparison, as in the subset run: the dense teacher, the QAT's oBERT model and its INT8 export
    # through every engine and layout (the other rows got one engine each, above).
    assert teacher_info is not None and dense_dir is not None and int8_dir is not None
    source_dir = pruned[qat_source][0]
    int8_label = f"oBERT {round(100 * config.quantize_sparsity)}% INT8"
    models = {"dense FP32": dense_dir,
              row_label("obs", config.quantize_sparsity): export_run(config, source_dir, "prune", data_dir, progress),
              int8_label: int8_dir}
    heldout = {"teacher": experiment.heldout.score("teacher", teacher_dir),
               "qat": experiment.heldout.score("qat", source_dir / "quantize" / "model"),
               "qat_float64": experiment.heldout.score("qat_float64", source_dir / "quantize" / "model")}
    harness: dict[str, dict[str, Any]] = {}
    if config.harness:
        harness = run_harness_phase(models, config, experiment.heldout_data, out_dir, experiment.windows, int8_label,
                                    progress)
    results = summarize(config, teacher_info, store.rows(), qat_report, models, harness, int8_label, heldout)
    results["table_markdown"] = results_table(results)
    results["duration_s"] = round(time.perf_counter() - started, 1)
    results["protocol"] = protocol
    for folder in (out_dir, store.directory / ENGINES_SUBDIR):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RESULTS_FILE).write_text(json.dumps({k: v for k, v in results.items() if k != "protocol"}, indent=2,
                                                      default=str) + "\n")
        (folder / TABLE_FILE).write_text(results["table_markdown"] + "\n")
        plot_results(results, folder / PLOT_FILE)
        plot_f1_vs_sparsity(results, folder / SPARSITY_PLOT_FILE)
    store.commit_results("real-accuracy: the engine comparison of the QAT's oBERT model")
    return results
