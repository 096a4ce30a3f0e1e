"""Evaluation of models during and after compression: SQuAD F1/EM the way the harness scores them,
and the held-out loss.

F1/EM use the harness's own path: MLPerf-style windows (:mod:`squad.features`), the reference
post-processing (:func:`squad.scoring.predict_answers`) and the official metric
(:func:`squad.scoring.squad_v1_scores`), restricted to the questions the evaluated windows cover
when only part of the file is evaluated. Any PyTorch QA model (plain or QAT) or an ONNX file (through
ONNX Runtime) can be scored.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from compression.train_features import TrainFeatures
from squad.scoring import score_windows
from squad.features import FeatureParams, FeatureSet, load_or_build_features, select_features

log = logging.getLogger(__name__)


def load_eval_features(
    squad_json: Path, vocab: Path, params: FeatureParams, cache_dir: Path, max_features: int | None = None
) -> FeatureSet:
    """MLPerf-style windows of ``squad_json`` (cached), optionally only the first ``max_features``."""
    features = load_or_build_features(Path(squad_json), Path(vocab), params, Path(cache_dir), progress=False)
    return select_features(features, max_features) if max_features else features


@torch.no_grad()
def torch_logits(
    model: torch.nn.Module, features: FeatureSet, *, batch_size: int = 64, device: str = "cpu",
    progress: bool = True, description: str = "evaluating",
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Start/end logits of every window. Each batch is cut to its longest window: with the attention
    mask the logits of real tokens do not depend on trailing padding, and only those are scored."""
    was_training = model.training
    model.eval().to(device)
    logits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    order = np.argsort(features.seq_lengths, kind="stable")  # similar lengths together: less padding
    for lo in tqdm(range(0, len(order), batch_size), desc=description, unit="batch", disable=not progress, leave=False):
        index = order[lo:lo + batch_size]
        length = int(features.seq_lengths[index].max())
        output = model(
            input_ids=torch.as_tensor(features.input_ids[index, :length], dtype=torch.long).to(device),
            attention_mask=torch.as_tensor(features.input_mask[index, :length], dtype=torch.long).to(device),
            token_type_ids=torch.as_tensor(features.segment_ids[index, :length], dtype=torch.long).to(device),
        )
        start, end = output["start_logits"].float().cpu().numpy(), output["end_logits"].float().cpu().numpy()
        for row, feature in enumerate(index):
            logits[int(feature)] = (start[row], end[row])
    model.train(was_training)
    return logits


def onnx_logits(onnx_path: Path, features: FeatureSet, *, batch_size: int = 32, progress: bool = True,
                threads: int | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Start/end logits of every window from an exported model through ONNX Runtime (full-length windows)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    logits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for lo in tqdm(range(0, len(features), batch_size), desc="evaluating ONNX", unit="batch", disable=not progress,
                   leave=False):
        hi = min(lo + batch_size, len(features))
        start, end = session.run(["start_logits", "end_logits"], {
            "input_ids": features.input_ids[lo:hi].astype(np.int64),
            "attention_mask": features.input_mask[lo:hi].astype(np.int64),
            "token_type_ids": features.segment_ids[lo:hi].astype(np.int64),
        })
        for row in range(hi - lo):
            logits[lo + row] = (start[row], end[row])
    return logits


def score_logits(features: FeatureSet, logits: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """F1/EM (percent) over the questions ``features`` covers (all of the file when it covers all)."""
    _, scores = score_windows(features, logits)
    return {"f1": round(scores["f1"], 4), "exact_match": round(scores["exact_match"], 4),
            "questions": scores["questions"], "windows": len(features), "subset_of_file": scores["subset"]}


def evaluate_squad(model: torch.nn.Module, features: FeatureSet, *, device: str = "cpu",
                   batch_size: int = 64, progress: bool = True, description: str = "evaluating") -> dict[str, Any]:
    """F1/EM of a PyTorch QA model on ``features`` (their examples carry the gold answers)."""
    started = time.perf_counter()
    logits = torch_logits(model, features, batch_size=batch_size, device=device, progress=progress,
                          description=description)
    result = score_logits(features, logits)
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, features: TrainFeatures, *, batch_size: int = 64, device: str = "cpu") -> float:
    """Mean start/end cross-entropy (the model's own QA loss) over labelled windows, in eval mode."""
    was_training = model.training
    model.eval().to(device)
    total, count = 0.0, 0
    for lo in range(0, len(features), batch_size):
        batch = features.batch(range(lo, min(lo + batch_size, len(features))))
        length = max(int(batch["attention_mask"].sum(dim=1).max()), 1)
        # Same trimming as training on CPU; the loss depends on the softmax width, so keep it consistent
        # between the methods compared rather than across trimmed/untrimmed runs.
        batch = {k: (v[:, :length] if v.dim() == 2 else v).to(device) for k, v in batch.items()}
        output = model(**batch)
        total += float(output["loss"]) * len(batch["input_ids"])
        count += len(batch["input_ids"])
    model.train(was_training)
    return total / max(count, 1)
