"""Accuracy: LoadGen's accuracy log -> answer texts -> official SQuAD v1.1 exact match and F1.

The SUT answers every sample with the model's start/end logits as float32 ``[max_seq_length, 2]`` raw
bytes (the MLPerf BERT reference's response format); LoadGen writes them hex-encoded into
``mlperf_log_accuracy.json``. This module encodes and decodes those responses and reads the log;
post-processing and the official metrics are :mod:`squad.scoring`, shared with the compression pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from squad.features import FeatureSet
from squad.scoring import score_windows

PAD_LOGIT = -10000.0  # logit for positions the model did not return (reference value)
ACCURACY_TXT = "accuracy.txt"  # the checker's file: only a score over every question goes there
PREDICTIONS_JSON = "predictions.json"
# A score over part of the questions (--partial) gets its own names, so it is never packaged as a result
PARTIAL_ACCURACY_TXT = "accuracy-partial.txt"
PARTIAL_PREDICTIONS_JSON = "predictions-partial.json"
SCORE_FILES = (ACCURACY_TXT, PREDICTIONS_JSON, PARTIAL_ACCURACY_TXT, PARTIAL_PREDICTIONS_JSON)


class AccuracyLogError(HarnessError):
    """The LoadGen accuracy log is missing, malformed, or does not fit the feature set."""


# ----------------------------------------------------------------------------------------------
# Response encoding (shared with the SUT)


def encode_logits_batch(start_logits: np.ndarray, end_logits: np.ndarray, max_seq_length: int) -> np.ndarray:
    """float32 ``[n, max_seq_length, 2]`` (C-contiguous; row i is sample i's response bytes).

    Logits shorter than ``max_seq_length`` are padded with -10000, so every response has the same size.
    """
    start = np.asarray(start_logits, dtype=np.float32)
    end = np.asarray(end_logits, dtype=np.float32)
    if start.ndim != 2 or start.shape != end.shape:
        raise ValueError(f"expected start/end logits of the same shape [n, seq], got {start.shape} and {end.shape}")
    if start.shape[1] > max_seq_length:
        raise ValueError(f"logits have {start.shape[1]} positions, more than max_seq_length {max_seq_length}")
    out = np.full((start.shape[0], max_seq_length, 2), PAD_LOGIT, dtype=np.float32)
    out[:, :start.shape[1], 0] = start
    out[:, :start.shape[1], 1] = end
    return out


def encode_logits(start_logits: np.ndarray, end_logits: np.ndarray, max_seq_length: int) -> bytes:
    """One sample's response: float32 ``[max_seq_length, 2]`` (column 0 start, column 1 end) as bytes."""
    start = np.asarray(start_logits).reshape(1, -1)
    end = np.asarray(end_logits).reshape(1, -1)
    return encode_logits_batch(start, end, max_seq_length)[0].tobytes()


def decode_logits(data: bytes, max_seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) float32 logits of length ``max_seq_length`` from a response; short ones are padded."""
    if len(data) % 8:
        raise AccuracyLogError(f"a response of {len(data)} bytes is not a whole number of float32 (start, end) pairs")
    pairs = np.frombuffer(data, dtype=np.float32).reshape(-1, 2)
    if pairs.shape[0] > max_seq_length:
        raise AccuracyLogError(
            f"a response holds {pairs.shape[0]} positions, more than max_seq_length {max_seq_length}"
        )
    start = np.full(max_seq_length, PAD_LOGIT, dtype=np.float32)
    end = np.full(max_seq_length, PAD_LOGIT, dtype=np.float32)
    start[:pairs.shape[0]] = pairs[:, 0]
    end[:pairs.shape[0]] = pairs[:, 1]
    return start, end


def read_accuracy_log(path: Path) -> dict[int, bytes]:
    """Responses by QSL index from ``mlperf_log_accuracy.json``.

    LoadGen may log a sample more than once (e.g. in accuracy mode with repeated queries): the first
    entry is kept, and a later one that differs is an error since we could not tell which is right.
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AccuracyLogError(f"{path}: accuracy log not found (was the run made in accuracy mode?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccuracyLogError(f"{path}: cannot read the accuracy log: {exc}") from None
    except json.JSONDecodeError as exc:
        raise AccuracyLogError(
            f"{path}: accuracy log is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"was the run interrupted?"
        ) from None
    if not isinstance(entries, list):
        raise AccuracyLogError(f"{path}: expected a JSON list of LoadGen responses, got {type(entries).__name__}")
    responses: dict[int, bytes] = {}
    for i, entry in enumerate(entries):
        try:
            qsl_idx, hex_data = entry["qsl_idx"], entry["data"]
            if not isinstance(qsl_idx, int) or isinstance(qsl_idx, bool) or qsl_idx < 0:
                raise TypeError("qsl_idx must be a non-negative integer")
            data = bytes.fromhex(hex_data)
        except (TypeError, KeyError, ValueError) as exc:
            raise AccuracyLogError(
                f"{path}: entry [{i}] is not a LoadGen response with integer qsl_idx and hex data ({exc})"
            ) from None
        previous = responses.setdefault(qsl_idx, data)
        if previous != data:
            raise AccuracyLogError(f"{path}: qsl_idx {qsl_idx} appears more than once with different data")
    return responses


def evaluate_accuracy_log(accuracy_log: Path, features: FeatureSet, out_dir: Path, *,
                          complete: bool = False, partial: bool = False) -> dict:
    """Score a run: writes ``predictions.json`` and the checker's one-line ``accuracy.txt`` to ``out_dir``
    (``predictions-partial.json`` and ``accuracy-partial.txt``, marked partial, for a ``partial`` score).

    With the full feature set every dataset question counts (official). With a subset (``--count``)
    only the questions the subset covers are scored, so quick runs give a meaningful number.
    ``complete``: refuse a log without a response for every feature (an interrupted or truncated run)
    instead of scoring the missing questions as wrong; with ``partial`` such a log is scored over the
    questions it has responses for, and says so (``partial_log``).
    """
    responses = read_accuracy_log(accuracy_log)
    if not responses:
        raise AccuracyLogError(f"{accuracy_log}: the accuracy log holds no responses; nothing to score")
    too_big = [i for i in responses if i >= len(features)]
    if too_big:
        raise AccuracyLogError(
            f"{accuracy_log}: qsl_idx {max(too_big)} is beyond the {len(features)} features of this dataset; "
            f"was the log made with other data or settings?"
        )
    seq = features.params.max_seq_length
    # An empty response is what the SUT sends for a sample whose batch failed: it carries no logits.
    logits = {index: decode_logits(data, seq) for index, data in responses.items() if data}
    partial_log = len(logits) < len(features)
    if partial_log and complete and not partial:
        raise AccuracyLogError(
            f"{accuracy_log}: responses with logits for only {len(logits)} of the {len(features)} features; the "
            "missing questions would score 0. Score a complete log, or pass --partial to score only the questions "
            "the log covers (not a result to report)"
        )
    question_ids = None
    if partial and partial_log:  # only the questions with at least one window in the log
        question_ids = {features.examples[int(features.example_index[i])].qas_id for i in logits}
    predicted, scores = score_windows(features, logits, question_ids=question_ids)

    from harness.rundir import write_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scored_partially = bool(partial and partial_log)
    line = {"exact_match": scores["exact_match"], "f1": scores["f1"]}
    if scored_partially:
        line.update(partial=True, questions_scored=scores["questions"],
                    note="scored over the questions with responses in an incomplete accuracy log; not a result")
    write_atomic(out_dir / (PARTIAL_PREDICTIONS_JSON if scored_partially else PREDICTIONS_JSON),
                 json.dumps(predicted.answers, indent=1, ensure_ascii=False) + "\n")
    write_atomic(out_dir / (PARTIAL_ACCURACY_TXT if scored_partially else ACCURACY_TXT), json.dumps(line) + "\n")
    return {
        "exact_match": scores["exact_match"],
        "f1": scores["f1"],
        "features_in_log": len(responses),
        "features_with_logits": predicted.features_with_logits,
        "features_total": len(features),
        "examples_scored": scores["questions"],
        "examples_with_logits": predicted.examples_with_logits,
        "missing_examples": len(predicted.missing_examples),
        "subset": scores["subset"],
        "partial_log": partial_log,
        "files": [PARTIAL_ACCURACY_TXT, PARTIAL_PREDICTIONS_JSON] if scored_partially else [ACCURACY_TXT, PREDICTIONS_JSON],
    }
