"""SQuAD v1.1 post-processing and the official metrics, following the MLPerf BERT reference.

Post-processing picks the best legal span per question over all its windows from per-window start/end
logits and maps it back to the original context text the way the reference (Google BERT's
``run_squad.py``) does; scoring follows the official ``evaluate-v1.1.py`` (normalization, max over gold
answers, mean over all questions). Shared by the harness (LoadGen accuracy logs) and the compression
pipeline (PyTorch evaluation), so both report the same F1 for the same logits.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from squad.examples import SquadExample, load_squad_examples
from squad.features import FeatureSet

N_BEST_SIZE = 20
MAX_ANSWER_LENGTH = 30


# ----------------------------------------------------------------------------------------------
# Post-processing


@lru_cache(maxsize=2)
def _basic_tokenizer(do_lower_case: bool):
    from transformers.models.bert.tokenization_bert import BasicTokenizer

    return BasicTokenizer(do_lower_case=do_lower_case)


def warm_up() -> None:
    """Load the tokenizer post-processing uses, so that a caller can do it ahead of the first answer."""
    _basic_tokenizer(True)


def _strip_spaces(text: str) -> tuple[str, list[int]]:
    """``text`` without spaces, and for each kept character its index in ``text``."""
    kept = [i for i, char in enumerate(text) if char != " "]
    return "".join(text[i] for i in kept), kept


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool = True) -> str:
    """The part of ``orig_text`` (original words) that the normalized ``pred_text`` covers.

    ``pred_text`` comes from WordPiece tokens (lowercased, accents stripped, punctuation split), so it
    may cover only part of the original words, e.g. "1990" of "1990s" or "broncos" of "Broncos,". The
    original words are basic-tokenized the same way; since basic tokenization only lowercases and
    inserts spaces, the two space-free strings have equal length whenever it changed no characters,
    and the prediction's character span maps back one-to-one. Otherwise the whole words are returned.
    """
    tokenized = " ".join(_basic_tokenizer(do_lower_case).tokenize(orig_text))
    start = tokenized.find(pred_text)
    if start == -1 or not pred_text:
        return orig_text
    end = start + len(pred_text) - 1

    orig_chars, orig_positions = _strip_spaces(orig_text)
    tokenized_chars, tokenized_positions = _strip_spaces(tokenized)
    if len(orig_chars) != len(tokenized_chars):
        return orig_text  # basic tokenization changed the characters (e.g. stripped accents differently)
    tokenized_to_stripped = {position: i for i, position in enumerate(tokenized_positions)}
    if start not in tokenized_to_stripped or end not in tokenized_to_stripped:
        return orig_text  # the prediction starts or ends on a space
    orig_start = orig_positions[tokenized_to_stripped[start]]
    orig_end = orig_positions[tokenized_to_stripped[end]]
    return orig_text[orig_start:orig_end + 1]


def _best_indexes(logits: np.ndarray, n_best_size: int) -> np.ndarray:
    # stable sort on the negated logits: ties keep the lower position first, like the reference's sorted()
    return np.argsort(-logits, kind="stable")[:n_best_size]


def _best_span(
    start_logits: np.ndarray, end_logits: np.ndarray, token_to_orig_map: Mapping[int, int],
    token_is_max_context: Mapping[int, bool], num_tokens: int, n_best_size: int, max_answer_length: int,
) -> tuple[float, int, int] | None:
    """(score, start, end) of the best legal span in one window, or None if there is none.

    Candidates are the top-n starts x top-n ends; the first (in start-rank, then end-rank order) of
    the highest-scoring ones wins, which is the span the reference's stable sort puts first.
    """
    seq = len(start_logits)
    in_doc = np.zeros(seq, dtype=bool)
    max_context = np.zeros(seq, dtype=bool)
    positions = np.fromiter(token_to_orig_map.keys(), dtype=np.int64, count=len(token_to_orig_map))
    positions = positions[positions < min(seq, num_tokens)]
    in_doc[positions] = True
    max_context[positions] = [bool(token_is_max_context.get(int(p), False)) for p in positions]

    starts = _best_indexes(start_logits, n_best_size)[:, None]
    ends = _best_indexes(end_logits, n_best_size)[None, :]
    legal = (
        in_doc[starts] & in_doc[ends] & max_context[starts]
        & (ends >= starts) & (ends - starts + 1 <= max_answer_length)
    )
    if not legal.any():
        return None
    # float64 sums, as the reference adds Python floats
    scores = start_logits.astype(np.float64)[starts] + end_logits.astype(np.float64)[ends]
    scores = np.where(legal, scores, -np.inf)
    flat = int(np.argmax(scores))  # first maximum in row-major (start rank, end rank) order
    i, j = divmod(flat, scores.shape[1])
    return float(scores[i, j]), int(starts[i, 0]), int(ends[0, j])


def _span_text(features: FeatureSet, feature: int, start: int, end: int, do_lower_case: bool) -> str:
    example = features.examples[int(features.example_index[feature])]
    piece_text = " ".join(features.tokens[feature][start:end + 1])
    piece_text = piece_text.replace(" ##", "").replace("##", "")  # undo WordPiece splits
    piece_text = " ".join(piece_text.split())
    orig_start = features.token_to_orig_map[feature][start]
    orig_end = features.token_to_orig_map[feature][end]
    orig_text = " ".join(example.doc_tokens[orig_start:orig_end + 1])
    return get_final_text(piece_text, orig_text, do_lower_case)


@dataclass
class Predictions:
    """Answer texts by question id, with what was (not) found in the log."""

    answers: dict[str, str]
    features_with_logits: int = 0
    examples_with_logits: int = 0
    missing_examples: list[str] = field(default_factory=list)  # questions none of whose windows were logged


def predict_answers(
    features: FeatureSet, logits: Mapping[int, tuple[np.ndarray, np.ndarray]], *,
    n_best_size: int = N_BEST_SIZE, max_answer_length: int = MAX_ANSWER_LENGTH, do_lower_case: bool = True,
) -> Predictions:
    """Best answer text per question covered by ``features``, from per-window (start, end) logits.

    ``logits`` maps feature index -> (start, end); windows without an entry are skipped, and a
    question none of whose windows has logits gets "" and is listed in ``missing_examples``.
    """
    best: dict[int, tuple[float, int, int, int]] = {}  # example -> (score, feature, start, end)
    examples_seen: set[int] = set()
    examples_logged: set[int] = set()
    for feature in range(len(features)):
        example = int(features.example_index[feature])
        examples_seen.add(example)
        if feature not in logits:
            continue
        examples_logged.add(example)
        start_logits, end_logits = (np.asarray(x, dtype=np.float32) for x in logits[feature])
        span = _best_span(
            start_logits, end_logits, features.token_to_orig_map[feature], features.token_is_max_context[feature],
            len(features.tokens[feature]), n_best_size, max_answer_length,
        )
        # strict '>' keeps the earlier window on ties, as the reference's stable sort does
        if span is not None and (example not in best or span[0] > best[example][0]):
            best[example] = (span[0], feature, span[1], span[2])

    answers: dict[str, str] = {}
    missing: list[str] = []
    for example in sorted(examples_seen):
        qas_id = features.examples[example].qas_id
        if example in best:
            _, feature, start, end = best[example]
            answers[qas_id] = _span_text(features, feature, start, end, do_lower_case)
        elif example in examples_logged:
            answers[qas_id] = "empty"  # logged, but no legal span: the reference's placeholder answer
        else:
            answers[qas_id] = ""
            missing.append(qas_id)
    return Predictions(
        answers=answers, features_with_logits=sum(1 for f in range(len(features)) if f in logits),
        examples_with_logits=len(examples_logged), missing_examples=missing,
    )


# ----------------------------------------------------------------------------------------------
# Official SQuAD v1.1 metrics

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalization: lowercase, drop ASCII punctuation, drop a/an/the, collapse whitespace."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    """Bag-of-tokens F1 between normalized answers (0 when nothing overlaps)."""
    predicted = normalize_answer(prediction).split()
    gold = normalize_answer(ground_truth).split()
    overlap = sum((Counter(predicted) & Counter(gold)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_v1_scores(
    dataset: Path | Sequence[SquadExample], predictions: Mapping[str, str], *,
    question_ids: Collection[str] | None = None,
) -> dict:
    """Exact match and F1 in percent, averaged over all questions (unanswered ones score 0).

    ``dataset``: the SQuAD file, or its examples already read (a FeatureSet's ``examples``: the same
    questions and gold answers, without parsing the file again). ``question_ids`` restricts the average
    to those questions (used for partial runs only; the MLPerf number is the one over the whole dataset).
    """
    examples = load_squad_examples(Path(dataset)) if isinstance(dataset, (str, Path)) else dataset
    exact = f1 = 0.0
    total = 0
    for example in examples:
        if question_ids is not None and example.qas_id not in question_ids:
            continue
        total += 1
        if example.qas_id not in predictions:
            continue
        golds = [answer["text"] for answer in example.answers]
        if not golds:
            continue
        prediction = predictions[example.qas_id]
        exact += max(exact_match_score(prediction, gold) for gold in golds)
        f1 += max(f1_score(prediction, gold) for gold in golds)
    if total == 0:
        return {"exact_match": 0.0, "f1": 0.0, "questions": 0}
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total, "questions": total}


def score_windows(
    features: FeatureSet, logits: Mapping[int, tuple[np.ndarray, np.ndarray]], *,
    question_ids: Collection[str] | None = None,
) -> tuple[Predictions, dict]:
    """Answers from per-window logits, and their exact match / F1 over the questions ``features`` covers
    (every question of the file when the features are all of it; fewer for a ``--count`` subset), or over
    ``question_ids`` when given. Returns the predictions and the scores (with ``subset``: whether fewer
    than all of the file's questions were scored)."""
    predicted = predict_answers(features, logits)
    if question_ids is None:
        covered = {int(i) for i in np.unique(features.example_index)}
        if len(covered) < len(features.examples):
            question_ids = {features.examples[i].qas_id for i in covered}
    # Questions without any logits are written as "" but scored as unanswered (0), like the official
    # script does for absent ids: "" would otherwise match the few golds that normalize to "" (e.g. ".").
    missing = set(predicted.missing_examples)
    answered = {qas_id: text for qas_id, text in predicted.answers.items() if qas_id not in missing}
    scores = squad_v1_scores(features.examples, answered, question_ids=question_ids)
    return predicted, {**scores, "subset": question_ids is not None and scores["questions"] < len(features.examples)}
