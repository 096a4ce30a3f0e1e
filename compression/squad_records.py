"""SQuAD-format question records for training: read from a local SQuAD v1.1-format file or, online, from the Hugging
Face ``squad`` dataset; written back as SQuAD files; thinned for small runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from squad.errors import DatasetError
from squad.examples import parse_squad_examples

HF_SQUAD_SOURCE = "hf:squad"  # --train-data value meaning "Hugging Face datasets' squad, train split"


@dataclass(frozen=True)
class QARecord:
    """One SQuAD question with its context and gold answers (character offsets into the context)."""

    qas_id: str
    title: str
    context: str
    question: str
    answers: tuple[dict[str, Any], ...]  # each {"text": str, "answer_start": int}


def read_squad_records(path: Path) -> list[QARecord]:
    """All questions of a SQuAD v1.1-format file, in file order; a malformed file raises one DatasetError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the SQuAD-format training data ({exc.strerror or exc})") from None
    parse_squad_examples(raw, path)  # the harness's validation: names the exact spot of any problem
    document = json.loads(raw.decode("utf-8-sig"))
    records: list[QARecord] = []
    for article_number, article in enumerate(document["data"]):
        title = str(article.get("title", f"article-{article_number}"))
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                records.append(QARecord(
                    qas_id=qa["id"], title=title, context=paragraph["context"], question=qa["question"],
                    answers=tuple({"text": a["text"], "answer_start": a["answer_start"]} for a in qa.get("answers", [])),
                ))
    if not records:
        raise DatasetError(f"{path}: holds no questions")
    return records


def load_hf_squad(split: str = "train") -> list[QARecord]:
    """The Hugging Face ``squad`` dataset (needs internet on first use; cached by ``datasets`` after)."""
    try:
        from datasets import load_dataset

        dataset = load_dataset("squad", split=split)
    except Exception as exc:  # ConnectionError, FileNotFoundError, DatasetNotFoundError, ...
        raise DatasetError(
            f"could not load the Hugging Face 'squad' dataset (split {split!r}): {type(exc).__name__}: {exc}. "
            "It needs internet access on first use; offline, pass a local SQuAD-format file with --train-data "
            "or use --dev-split to train on part of dev-v1.1.json"
        ) from None
    return [
        QARecord(
            qas_id=row["id"], title=row["title"], context=row["context"], question=row["question"],
            answers=tuple({"text": t, "answer_start": int(s)}
                          for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])),
        )
        for row in dataset
    ]


def write_squad_json(records: Sequence[QARecord], path: Path, *, note: str | None = None) -> Path:
    """Write records as a SQuAD v1.1-format file (articles by title, paragraphs by context, in order)."""
    articles: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        paragraphs = articles.setdefault(record.title, {})
        paragraph = paragraphs.setdefault(record.context, {"context": record.context, "qas": []})
        paragraph["qas"].append({"id": record.qas_id, "question": record.question, "answers": list(record.answers)})
    document: dict[str, Any] = {
        "version": "1.1",
        "data": [{"title": title, "paragraphs": list(paragraphs.values())} for title, paragraphs in articles.items()],
    }
    if note:
        document["note"] = note  # extra top-level keys are ignored by SQuAD readers
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def limit_records(records: Sequence[QARecord], max_questions: int | None) -> list[QARecord]:
    """``max_questions`` records spread evenly over the data (all when None), for small runs.

    Evenly spaced rather than the first N, so a small slice still covers many articles.
    """
    if max_questions is None or max_questions >= len(records):
        return list(records)
    if max_questions < 1:
        raise DatasetError(f"max_questions must be at least 1, got {max_questions}")
    picks = np.unique(np.linspace(0, len(records) - 1, max_questions).round().astype(int))
    return [records[int(i)] for i in picks]
