"""Training features (token windows labelled with start/end answer positions), their cache, and the seeded order in
which an epoch visits them.

They follow the published run (sparseml's ``question_answering.py``, itself Hugging Face's ``run_qa.py``): the
question (left-stripped) and the context are tokenized together, the context is cut into ``max_seq_length`` windows
that *overlap* by ``doc_stride`` tokens (the tokenizer's ``stride``), and each window is labelled with the token
positions of the first gold answer, or with the [CLS] position (0) when the answer is not entirely inside it. The
harness's evaluation windows follow the MLPerf reference instead, where ``doc_stride`` is how far each window's start
advances: training reproduces the published recipe run, evaluation reproduces MLPerf.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from compression.squad_records import QARecord
from squad.errors import DatasetError

log = logging.getLogger(__name__)

TRAIN_FEATURES_VERSION = 1  # bump when the feature conversion changes (invalidates the cache)
_TOKENIZE_CHUNK = 512  # questions per tokenizer call: throughput vs progress granularity


@dataclass(frozen=True)
class WindowParams:
    """Training window geometry (published run: 384 tokens, 128 overlapping tokens)."""

    max_seq_length: int = 384
    doc_stride: int = 128

    def __post_init__(self) -> None:
        if self.max_seq_length < 16 or not 0 < self.doc_stride < self.max_seq_length // 2:
            raise DatasetError(
                f"invalid training windows max_seq_length={self.max_seq_length}, doc_stride={self.doc_stride}: "
                "need max_seq_length >= 16 and 0 < doc_stride < max_seq_length / 2"
            )


@dataclass
class TrainFeatures:
    """Model inputs and answer labels of every training window (int64 tensors [N, L] and [N])."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    start_positions: torch.Tensor
    end_positions: torch.Tensor
    example_index: torch.Tensor  # window -> index of its question in the records it was built from

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def batch(self, indices: torch.Tensor | Sequence[int], *, labels: bool = True) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``model(**batch)``; with ``labels`` the model also returns its loss."""
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {
            "input_ids": self.input_ids[index],
            "attention_mask": self.attention_mask[index],
            "token_type_ids": self.token_type_ids[index],
        }
        if labels:
            batch["start_positions"] = self.start_positions[index]
            batch["end_positions"] = self.end_positions[index]
        return batch

    def subset(self, count: int) -> TrainFeatures:
        """The first ``count`` windows."""
        return TrainFeatures(*(getattr(self, name)[:count] for name in self.__dataclass_fields__))

    def sample(self, count: int, seed: int, strata: Sequence[str]) -> TrainFeatures:
        """``count`` windows drawn at random (seeded), stratified by ``strata`` (one label per window: its article),
        kept in file order. Each stratum gets a share of ``count`` proportional to its windows (largest remainders,
        at least one each while the budget allows), drawn uniformly within it. Unlike :meth:`subset` every article
        is represented (a file's first windows come from its first few articles)."""
        if len(strata) != len(self):
            raise ValueError(f"{len(strata)} strata labels for {len(self)} windows")
        members: dict[str, list[int]] = {}
        for index, label in enumerate(strata):
            members.setdefault(label, []).append(index)
        count = min(count, len(self))
        exact = {label: count * len(rows) / len(self) for label, rows in members.items()}
        quota = {label: min(len(members[label]), max(1 if count >= len(members) else 0, int(share)))
                 for label, share in exact.items()}
        # hand out what is left by largest remainder (or take back from the largest shares when the floor of one
        # each overshot), never beyond a stratum's windows
        by_remainder = sorted(members, key=lambda label: exact[label] - int(exact[label]), reverse=True)
        while sum(quota.values()) < count:
            label = next(label for label in by_remainder if quota[label] < len(members[label]))
            quota[label] += 1
            by_remainder.remove(label)
            by_remainder.append(label)
        while sum(quota.values()) > count:
            label = max(quota, key=lambda label: quota[label] - exact[label])
            quota[label] -= 1
        generator = torch.Generator().manual_seed(seed)
        chosen = []
        for label, rows in members.items():
            order = torch.randperm(len(rows), generator=generator)[: quota[label]]
            chosen += [rows[int(i)] for i in order]
        index = torch.tensor(sorted(chosen), dtype=torch.long)
        return TrainFeatures(*(getattr(self, name)[index] for name in self.__dataclass_fields__))

    def article_coverage(self, records: Sequence[QARecord]) -> dict[str, Any]:
        """Which articles of ``records`` (the records these windows were built from) the windows come from."""
        titles = [records[int(i)].title for i in self.example_index.tolist()]
        per_article = Counter(titles)
        counts = sorted(per_article.values())
        available = list(dict.fromkeys(record.title for record in records))
        return {
            "windows": len(self), "questions": len(set(self.example_index.tolist())),
            "articles": len(per_article), "articles_available": len(available),
            "articles_missing": [title for title in available if title not in per_article],
            "windows_per_article": {"min": counts[0], "median": counts[len(counts) // 2], "max": counts[-1]}
            if counts else None,
        }

    def answer_fraction(self) -> float:
        """Fraction of windows that contain their answer (the others are labelled [CLS])."""
        return float((self.start_positions > 0).float().mean()) if len(self) else 0.0


def label_window(
    offsets: Sequence[tuple[int, int]], sequence_ids: Sequence[int | None], start_char: int, end_char: int
) -> tuple[int, int]:
    """(start, end) token positions of the answer characters ``[start_char, end_char)`` in one window.

    ``offsets`` are the tokens' character spans in their own text and ``sequence_ids`` say which text
    (0 question, 1 context, None special/padding). The answer must lie entirely in the window's context
    tokens, else (0, 0), the [CLS] position. The start is the last context token starting at or before
    ``start_char``, the end the first context token ending at or after ``end_char`` (Hugging Face's
    rule; unlike its loop, the search never runs past the context into [SEP] or padding).
    """
    context = [i for i, sid in enumerate(sequence_ids) if sid == 1]
    if not context:
        return 0, 0
    first, last = context[0], context[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return 0, 0
    start = max(i for i in context if offsets[i][0] <= start_char)
    end = min(i for i in context if offsets[i][1] >= end_char)
    return start, end


def build_train_features(
    records: Sequence[QARecord], tokenizer, params: WindowParams = WindowParams(), *, progress: bool = True
) -> TrainFeatures:
    """Tokenize every record into overlapping windows labelled with the first gold answer's positions."""
    if not records:
        raise DatasetError("no training questions to convert")
    columns: dict[str, list] = {name: [] for name in
                                ("input_ids", "attention_mask", "token_type_ids", "start_positions",
                                 "end_positions", "example_index")}
    with tqdm(total=len(records), desc="training windows", unit="question", disable=not progress, leave=False) as bar:
        for lo in range(0, len(records), _TOKENIZE_CHUNK):
            chunk = records[lo:lo + _TOKENIZE_CHUNK]
            encoded = tokenizer(
                [r.question.lstrip() for r in chunk],  # leading whitespace would only eat window space
                [r.context for r in chunk],
                truncation="only_second",
                max_length=params.max_seq_length,
                stride=params.doc_stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                return_token_type_ids=True,
                padding="max_length",
            )
            for window, sample in enumerate(encoded["overflow_to_sample_mapping"]):
                record = chunk[sample]
                if record.answers:
                    start_char = int(record.answers[0]["answer_start"])
                    end_char = start_char + len(record.answers[0]["text"])
                    start, end = label_window(encoded["offset_mapping"][window], encoded.sequence_ids(window),
                                              start_char, end_char)
                else:
                    start = end = 0
                columns["input_ids"].append(encoded["input_ids"][window])
                columns["attention_mask"].append(encoded["attention_mask"][window])
                columns["token_type_ids"].append(encoded["token_type_ids"][window])
                columns["start_positions"].append(start)
                columns["end_positions"].append(end)
                columns["example_index"].append(lo + sample)
            bar.update(len(chunk))
    return TrainFeatures(**{name: torch.tensor(values, dtype=torch.int64) for name, values in columns.items()})


def _records_fingerprint(records: Sequence[QARecord]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps([record.qas_id, record.context, record.question, record.answers],
                                 sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def _tokenizer_fingerprint(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps([vocab, bool(getattr(tokenizer, "do_lower_case", True))]).encode()).hexdigest()


def load_or_build_train_features(
    records: Sequence[QARecord], tokenizer, params: WindowParams, cache_dir: Path | None, *, progress: bool = True
) -> TrainFeatures:
    """:func:`build_train_features`, cached in ``cache_dir`` under a key over data, vocab and parameters."""
    if cache_dir is None:
        return build_train_features(records, tokenizer, params, progress=progress)
    key = hashlib.sha256(json.dumps({
        "records": _records_fingerprint(records), "tokenizer": _tokenizer_fingerprint(tokenizer),
        "params": asdict(params), "version": TRAIN_FEATURES_VERSION,
    }, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"train-features-{key}.pt"
    if path.is_file():
        try:
            stored = torch.load(path, weights_only=True)
            features = TrainFeatures(**stored)
            log.info("training features: %d windows from cache %s", len(features), path)
            return features
        except Exception as exc:  # noqa: BLE001 - a broken cache entry is rebuilt
            log.warning("training feature cache %s is unusable (%s); rebuilding", path, exc)
    features = build_train_features(records, tokenizer, params, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({name: getattr(features, name) for name in TrainFeatures.__dataclass_fields__}, tmp)
    tmp.replace(path)
    return features


def steps_per_epoch(num_features: int, batch_size: int) -> int:
    """Optimizer steps in one pass over the data (the last, partial batch counts, as in HF's Trainer)."""
    return math.ceil(num_features / batch_size)


def epoch_order(num_features: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled feature order of one epoch: a function of (seed, epoch) only, so a resumed run
    visits the same batches as an uninterrupted one."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_features, generator=generator)


def iter_epoch_batches(
    features: TrainFeatures, batch_size: int, seed: int, epoch: int, *, start_step: int = 0
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of one epoch (with labels), optionally skipping the first ``start_step`` of them."""
    order = epoch_order(len(features), seed, epoch)
    for step in range(start_step, steps_per_epoch(len(features), batch_size)):
        yield features.batch(order[step * batch_size:(step + 1) * batch_size])


def trim_to_longest(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` cut to its longest sequence (a CPU speed-up: no compute on padding shared by every row)."""
    length = max(int(batch["attention_mask"].sum(dim=1).max()), 1)
    return {k: (v[:, :length] if v.dim() == 2 else v) for k, v in batch.items()}


def batch_to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def feature_stats(features: TrainFeatures) -> dict[str, Any]:
    lengths = features.attention_mask.sum(dim=1).numpy()
    return {
        "windows": len(features),
        "questions": int(torch.unique(features.example_index).numel()) if len(features) else 0,
        "windows_with_answer": round(features.answer_fraction(), 4),
        "mean_tokens": float(np.mean(lengths)) if len(lengths) else 0.0,
    }
