"""The models of the real-accuracy experiment: the dense teacher, every pruning run, QAT and the exports, each
through :mod:`compression.steps` and cached under the experiment's directory, keyed by its settings (a
``fingerprint.json`` beside it: an interrupted run resumes from its checkpoint, a changed one starts over); then
every PyTorch model's held-out score, once."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from compression.checkpoints import load_qa_model, load_qat_model, save_checkpoint_dir
from compression.dev_split import DEV_SPLIT_NOTE
from compression.errors import CompressionError, VerificationError
from compression.evaluate import evaluate_squad, load_eval_features
from compression.export import export_model_dir, load_vocab_tokenizer
from compression.families import family_of, geometry_summary, qa_model_class
from compression.pretrained import resolve_pretrained
from compression.quantize import float64_copy
from compression.recipes import dense_recipe, dump_recipe
from compression.steps import RunConfig, run_export, run_prune, run_quantize
from compression.steps.data import evaluate_model, prepare_data
from compression.train import TrainSettings, train_with_recipe
from compression.train_checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILE
from experiments.real_accuracy.config import LABEL, RealAccuracyConfig, pipeline_preset
from experiments.real_accuracy.rows import WALL_TIME_FILE, wall_clock

log = logging.getLogger(__name__)

HELDOUT_SCORES_FILE = "heldout_torch_scores.json"
FAILED_INT8_DIR = "model-int8-failed-verification"  # an INT8 export that failed verification, measured anyway
SPARSITY_TOLERANCE = 0.005  # a pruning run's achieved sparsity against the one it was asked for


def _checkpoint_exists(work_dir: Path) -> bool:
    return (work_dir / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file()


def _same_fingerprint(path: Path, fingerprint: dict[str, Any]) -> bool:
    """True when ``path`` records this fingerprint; otherwise (re)writes it, so the work starts over."""
    wanted = json.loads(json.dumps(fingerprint, default=str))
    if path.is_file() and json.loads(path.read_text()) == wanted:
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=1) + "\n")
    return False


# ----------------------------------------------------------------------------------------------
# 1. Teacher


def check_tokenizer_vocab(checkpoint_dir: Path, vocab: Path) -> dict[str, Any]:
    """Whether the pretrained checkpoint's own tokenizer uses exactly the data's WordPiece vocabulary (in
    order): the harness tokenizes with the data directory's vocab, so a mismatch would feed wrong ids."""
    tokens = vocab.read_text(encoding="utf-8").splitlines()
    tokenizer_json = checkpoint_dir / "tokenizer.json"
    vocab_txt = checkpoint_dir / "vocab.txt"
    if vocab_txt.is_file():
        own = vocab_txt.read_text(encoding="utf-8").splitlines()
    elif tokenizer_json.is_file():
        table = json.loads(tokenizer_json.read_text())["model"]["vocab"]
        own = sorted(table, key=table.get)
    else:
        return {"checked": False, "reason": "the checkpoint ships no vocab.txt or tokenizer.json"}
    if own != tokens:
        raise CompressionError(f"{checkpoint_dir}: its tokenizer vocabulary ({len(own)} entries) is not {vocab} "
                               f"({len(tokens)} entries) in the same order; the model would see other token ids")
    return {"checked": True, "identical": True, "entries": len(tokens)}


def teacher_fingerprint(config: RealAccuracyConfig, out_dir: Path) -> dict[str, Any]:
    """The settings and pretrained weights the teacher is keyed by (also the key its committed row carries)."""
    pretrained_dir, provenance = resolve_pretrained(config.pretrained, out_dir / "pretrained")
    return json.loads(json.dumps({
        **config.fingerprint("window", "batch_size", "teacher_seed", "teacher_epochs", "teacher_learning_rate",
                             "teacher_max_windows", "max_eval_windows", "max_train_questions", "validation_articles"),
        "pretrained": provenance.get("weights_sha256") or str(pretrained_dir)}, default=str))


def ensure_teacher(config: RealAccuracyConfig, run: RunConfig, vocab: Path, out_dir: Path) -> tuple[Path, dict]:
    """The dense fine-tuned teacher (cached in ``out/teacher/model``; ``info["trained_now"]``: by this call)."""
    teacher_dir = out_dir / "teacher"
    model_dir = teacher_dir / "model"
    pretrained_dir, provenance = resolve_pretrained(config.pretrained, out_dir / "pretrained")
    fingerprint = teacher_fingerprint(config, out_dir)
    info_path = model_dir / "teacher.json"
    if info_path.is_file() and json.loads(info_path.read_text()).get("fingerprint") == fingerprint:
        return model_dir, {**json.loads(info_path.read_text()), "trained_now": False}
    vocab_check = check_tokenizer_vocab(pretrained_dir, vocab)
    tokenizer = load_vocab_tokenizer(vocab)
    data = prepare_data(run, tokenizer)
    resume = _same_fingerprint(teacher_dir / "fingerprint.json", fingerprint) and _checkpoint_exists(teacher_dir)
    with torch.random.fork_rng(devices=[]):  # the new QA head's initialisation is part of the seed
        torch.manual_seed(config.teacher_seed)
        model = qa_model_class(family_of(_config_of(pretrained_dir))).from_pretrained(str(pretrained_dir))
    log.info("teacher: %s with a new QA head (initialised from seed %d), fine-tuned densely", pretrained_dir,
             config.teacher_seed)
    recipe_path = teacher_dir / "recipe.yaml"
    recipe_path.write_text(dump_recipe(dense_recipe(config.teacher_epochs, config.teacher_learning_rate),
                                       header=f"dense fine-tuning of {config.pretrained} with a new QA head"))
    settings = TrainSettings(batch_size=config.batch_size, seed=config.teacher_seed,
                             learning_rate=config.teacher_learning_rate, trim_padding=True, num_threads=config.threads,
                             progress=run.progress, checkpoint_interval_s=config.checkpoint_interval_s)
    started = time.perf_counter()
    with wall_clock(teacher_dir / WALL_TIME_FILE):
        result = train_with_recipe(model, recipe_path, data.train_features, teacher_dir, settings,
                                   description="teacher", resume=resume)
    if not result.finished:
        raise CompressionError(f"teacher training stopped at step {result.completed_steps} of {result.total_steps}")
    evaluation = evaluate_model(model, data, run, "teacher")
    info = {"fingerprint": fingerprint, "pretrained": provenance, "vocab_check": vocab_check,
            "family": family_of(model).name, "geometry": geometry_summary(model.config),
            "steps": result.completed_steps, "windows": len(data.train_features), "evaluation": evaluation,
            "duration_s": round(time.perf_counter() - started, 1), "notes": data.notes}
    save_checkpoint_dir(model, tokenizer, model_dir, info)
    info_path.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return model_dir, {**info, "trained_now": True}


def _config_of(checkpoint_dir: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(checkpoint_dir))


# ----------------------------------------------------------------------------------------------
# 2./3. Pruning, QAT, export


def _stage_done(run_dir: Path, step: str) -> dict[str, Any] | None:
    report = run_dir / "reports" / f"{step}.json"
    if not report.is_file():
        return None
    saved = json.loads(report.read_text())
    return saved if saved.get("training", {}).get("finished", True) and (run_dir / step / "model").exists() else None


def prune_dir(out_dir: Path, method: str, sparsity: float, seed: int) -> Path:
    return out_dir / "runs" / f"{method}-{round(100 * sparsity)}pct-seed{seed}"


def prune_fingerprint(config: RealAccuracyConfig, teacher: dict[str, Any], method: str, sparsity: float,
                      seed: int) -> dict[str, Any]:
    """The settings a pruning run is keyed by (``teacher``: :func:`teacher_fingerprint`)."""
    return json.loads(json.dumps({
        **config.fingerprint("window", "batch_size", "prune_windows", "prune_epoch_scale", "num_grads",
                             "max_eval_windows", "max_train_questions", "validation_articles"),
        "window_selection": "sample", "method": method, "sparsity": sparsity, "seed": seed, "teacher": teacher},
        default=str))


def prune_run(config: RealAccuracyConfig, teacher_dir: Path, method: str, sparsity: float, seed: int, out_dir: Path,
              data_dir: Path | None, progress: bool) -> tuple[Path, dict[str, Any]]:
    """One pruning run (cached); returns its directory and prune report."""
    run_dir = prune_dir(out_dir, method, sparsity, seed)
    run = RunConfig(preset=pipeline_preset(config, teacher_dir, sparsity=sparsity, max_windows=config.prune_windows),
                    out_dir=run_dir, data_dir=data_dir, device="cpu", progress=progress, seed=seed,
                    max_train_questions=config.max_train_questions)
    fingerprint = prune_fingerprint(config, _teacher_id(teacher_dir), method, sparsity, seed)
    same = _same_fingerprint(run_dir / "fingerprint.json", fingerprint)
    report = _stage_done(run_dir, "prune") if same else None
    if report is None:
        with wall_clock(run_dir / "prune" / WALL_TIME_FILE):
            report = run_prune(run, model_spec=str(teacher_dir), teacher_spec=str(teacher_dir), pruning_method=method,
                               resume=same and _checkpoint_exists(run_dir / "prune"))
    if not report["training"]["finished"]:
        raise CompressionError(f"{run_dir}: pruning stopped before the end")
    achieved = report["sparsity_report"]["global_sparsity"]
    if abs(achieved - sparsity) > SPARSITY_TOLERANCE:  # e.g. a final_sparsity override that did not reach the recipe
        raise CompressionError(f"{run_dir}: the {method} run was asked for {sparsity:.0%} sparsity but reached "
                               f"{achieved:.2%}; see {run_dir / 'prune' / 'recipe.yaml'}")
    return run_dir, report


def quantize_fingerprint(config: RealAccuracyConfig, pruned: dict[str, Any]) -> dict[str, Any]:
    """The settings a QAT run is keyed by (``pruned``: its pruning run's :func:`prune_fingerprint`)."""
    return json.loads(json.dumps({**config.fingerprint("quantize_epoch_scale"), "pruned": pruned}, default=str))


def quantize_run(config: RealAccuracyConfig, teacher_dir: Path, run_dir: Path, data_dir: Path | None,
                 progress: bool) -> dict[str, Any]:
    seed = json.loads((run_dir / "fingerprint.json").read_text())["seed"]
    run = RunConfig(preset=pipeline_preset(config, teacher_dir, max_windows=config.prune_windows), out_dir=run_dir,
                    data_dir=data_dir, device="cpu", progress=progress, max_train_questions=config.max_train_questions,
                    seed=seed)
    fingerprint = quantize_fingerprint(config, json.loads((run_dir / "fingerprint.json").read_text()))
    same = _same_fingerprint(run_dir / "quantize" / "fingerprint.json", fingerprint)
    done = _stage_done(run_dir, "quantize") if same else None
    if done is not None:
        return done
    with wall_clock(run_dir / "quantize" / WALL_TIME_FILE):
        return run_quantize(run, teacher_spec=str(teacher_dir), resume=same and _checkpoint_exists(run_dir / "quantize"))


def export_run(config: RealAccuracyConfig, run_dir: Path, source: str, data_dir: Path | None, progress: bool) -> Path:
    """The ONNX model directory of a run's pruned (FP32) or QAT (INT8) model, exported and verified once."""
    out = run_dir / ("model-int8" if source == "quantize" else "model-fp32")
    failed_out = run_dir / FAILED_INT8_DIR
    source_report = run_dir / "reports" / f"{source}.json"
    for done in (out, failed_out) if source == "quantize" else (out,):
        if (done / "verify.json").is_file() and (done / "model.onnx").stat().st_mtime >= source_report.stat().st_mtime:
            return done
    run = RunConfig(preset=pipeline_preset(config, None), out_dir=run_dir, data_dir=data_dir, device="cpu",
                    progress=progress, threads=config.threads)
    # The INT8 export is scored against its QAT model before it is published (a few minutes, and it catches
    # export faults random-token logits cannot); the FP32 exports match PyTorch to 1e-4 and the harness scores them.
    try:
        run_export(run, source=source, model_dir=out, overwrite=True, evaluate=source == "quantize")
    except VerificationError as error:
        if source != "quantize":
            raise
        # How far the engines' INT8 is from the QAT model is what the experiment measures: an export that fails
        # its checks is measured anyway, from a directory named for it, and the table says so
        # (checks.int8_export_verification).
        log.warning("%s; measuring it anyway as %s", error, failed_out)
        run_export(run, source=source, model_dir=failed_out, overwrite=True, evaluate=True, publish_failed=True)
        return failed_out
    return out


def export_teacher(teacher_dir: Path, info: dict[str, Any], out_dir: Path) -> Path:
    """The dense teacher as an FP32 ONNX model directory (the table's dense row), exported once."""
    from compression.verify import verify_model_dir

    out = out_dir / "teacher" / "model-fp32"
    if (out / "verify.json").is_file():
        return out
    model = load_qa_model(teacher_dir).eval()
    tokenizer = load_vocab_tokenizer(teacher_dir / "vocab.txt")
    manifest = {"name": out.name, "trained": True, "description": f"dense {info['family']} teacher fine-tuned on the "
                f"dev split from {info['pretrained'].get('name', 'a pretrained encoder')}. {LABEL}",
                "num_layers": info["geometry"]["num_hidden_layers"], "geometry": info["geometry"], "sparsity": 0.0,
                "steps": [f"dense fine-tuning of {info['pretrained'].get('name')} with a new QA head "
                          f"({info['steps']} steps)", "export: ONNX via sparseml's exporter"],
                "notes": [DEV_SPLIT_NOTE], "warning": LABEL}

    def verify_staged(staged: Path) -> None:
        verify_model_dir(staged, model, raise_on_failure=True, published_as=out)

    export_model_dir(model, out, tokenizer=tokenizer, sequence_length=384, quantized=False, manifest=manifest,
                     overwrite=True, before_publish=verify_staged)
    return out


def _teacher_id(teacher_dir: Path) -> Any:
    info = teacher_dir / "teacher.json"
    return json.loads(info.read_text()).get("fingerprint") if info.is_file() else str(teacher_dir)


# ----------------------------------------------------------------------------------------------
# 4. Held-out scores


class HeldoutScores:
    """Held-out F1/EM of PyTorch models, each evaluated once (cached by its checkpoint's time and the questions'
    digest in ``out/heldout_torch_scores.json``). Keys: ``teacher``, ``method|sparsity|seed`` of a pruning run,
    ``qat`` and ``qat_float64`` (the QAT model computed in float64: with the float32 figure, the range its own float
    rounding spans, ``compression.quantize.float64_copy``)."""

    def __init__(self, config: RealAccuracyConfig, heldout_json: Path, vocab: Path, out_dir: Path, progress: bool):
        self.config, self.heldout_json, self.vocab, self.out_dir, self.progress = (config, Path(heldout_json), vocab,
                                                                                   out_dir, progress)
        self.cache_path = out_dir / HELDOUT_SCORES_FILE
        self.questions = hashlib.sha256(self.heldout_json.read_bytes()).hexdigest()
        self._features = None

    def score(self, key: str, model_dir: Path) -> dict[str, Any]:
        cache = json.loads(self.cache_path.read_text()) if self.cache_path.is_file() else {}
        stamp = max(p.stat().st_mtime for p in Path(model_dir).iterdir())
        if cache.get(key, {}).get("model_mtime") == stamp and cache[key].get("eval_sha256") == self.questions:
            return cache[key]
        if self._features is None:  # MLPerf's windows of the held-out questions, built once (all: what the harness scores)
            self._features = load_eval_features(self.heldout_json, self.vocab, self.config.eval_params,
                                                self.out_dir / "heldout-eval" / "features")
        model = load_qat_model(model_dir) if key.startswith("qat") else load_qa_model(model_dir).eval()
        evaluation = evaluate_squad(float64_copy(model) if key == "qat_float64" else model, self._features,
                                    device="cpu", progress=self.progress, description=f"{key} on the held-out articles")
        cache[key] = {**scores_of(evaluation), "model_dir": str(model_dir), "model_mtime": stamp,
                      "eval_json": str(self.heldout_json), "eval_sha256": self.questions}
        self.cache_path.write_text(json.dumps(cache, indent=1) + "\n")
        return cache[key]


def scores_of(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    if not evaluation:
        return None
    return {k: evaluation.get(k) for k in ("f1", "exact_match", "loss", "questions")}
