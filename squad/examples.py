"""Reading SQuAD v1.1: a JSON file, validated, into one :class:`SquadExample` per question, its context split into
words on whitespace as the MLPerf BERT reference splits it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from squad.errors import DatasetError


@dataclass
class SquadExample:
    """One question with its context, split into whitespace words like the reference."""

    qas_id: str
    question_text: str
    context_text: str
    doc_tokens: list[str]  # shared by all questions of a paragraph
    char_to_word_offset: list[int]
    answers: list[dict]  # each {"text": str, "answer_start": int}
    start_position: int | None  # word index of the first answer's start (None without answers)
    end_position: int | None


def is_squad_whitespace(char: str) -> bool:
    """The reference's whitespace: only these split words (other Unicode spaces stay inside a word)."""
    return char in " \t\r\n" or ord(char) == 0x202F


def split_context(context: str) -> tuple[list[str], list[int]]:
    """Whitespace words of ``context`` and, per character, the index of the word it belongs to."""
    doc_tokens: list[str] = []
    char_to_word_offset: list[int] = []
    prev_is_whitespace = True
    for char in context:
        if is_squad_whitespace(char):
            prev_is_whitespace = True
        else:
            if prev_is_whitespace:
                doc_tokens.append(char)
            else:
                doc_tokens[-1] += char
            prev_is_whitespace = False
        # whitespace maps to the word before it (-1 before the first word), as in the reference
        char_to_word_offset.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word_offset


def load_squad_examples(path: Path) -> list[SquadExample]:
    """Read and validate a SQuAD v1.1 JSON file; any problem raises one DatasetError naming the spot."""
    return parse_squad_examples(read_file_bytes(Path(path), "SQuAD dataset"), Path(path))


def parse_squad_examples(raw: bytes, path: Path) -> list[SquadExample]:
    """Like :func:`load_squad_examples`, from the file's bytes (``path`` is only used in messages)."""
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None

    def fail(where: str, expected: str, got: object) -> DatasetError:
        found = "null" if got is None else type(got).__name__
        return DatasetError(f"{path}: {where}: expected {expected}, got {found} (not a SQuAD v1.1 file?)")

    def field(obj: dict, key: str, kind: type, where: str, expected: str):
        if key not in obj:
            raise DatasetError(f"{path}: {where} has no {key!r} ({expected} expected; not a SQuAD v1.1 file?)")
        value = obj[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise fail(f"{where}.{key}", expected, value)
        return value

    if not isinstance(document, dict):
        raise fail("top level", 'an object with a "data" list', document)
    articles = field(document, "data", list, "top level", "a list of articles")
    examples: list[SquadExample] = []
    seen_ids: dict[str, str] = {}
    for a, article in enumerate(articles):
        where_a = f"data[{a}]"
        if not isinstance(article, dict):
            raise fail(where_a, 'an article object with "paragraphs"', article)
        paragraphs = field(article, "paragraphs", list, where_a, "a list of paragraphs")
        for p, paragraph in enumerate(paragraphs):
            where_p = f"{where_a}.paragraphs[{p}]"
            if not isinstance(paragraph, dict):
                raise fail(where_p, 'a paragraph object with "context" and "qas"', paragraph)
            context = field(paragraph, "context", str, where_p, "a context string")
            qas = field(paragraph, "qas", list, where_p, "a list of questions")
            doc_tokens, char_to_word_offset = split_context(context)
            for q, qa in enumerate(qas):
                where_q = f"{where_p}.qas[{q}]"
                if not isinstance(qa, dict):
                    raise fail(where_q, 'a question object with "id" and "question"', qa)
                if "is_impossible" in qa or "plausible_answers" in qa:
                    # v2.0 adds unanswerable questions; v1.1 scoring would give them answers and count them
                    raise DatasetError(
                        f"{path}: {where_q} has 'is_impossible': this is a SQuAD v2.0 file; MLPerf bert uses SQuAD "
                        "v1.1 dev (dev-v1.1.json), where every question has an answer"
                    )
                qas_id = field(qa, "id", str, where_q, "a string id")
                question = field(qa, "question", str, where_q, "a question string")
                if qas_id in seen_ids:
                    raise DatasetError(f"{path}: {where_q}.id {qas_id!r} is a duplicate of {seen_ids[qas_id]}.id")
                seen_ids[qas_id] = where_q
                raw_answers = qa.get("answers", [])  # optional: questions without answers can still be run
                if not isinstance(raw_answers, list):
                    raise fail(f"{where_q}.answers", "a list of answers", raw_answers)
                answers = []
                for n, answer in enumerate(raw_answers):
                    where_n = f"{where_q}.answers[{n}]"
                    if not isinstance(answer, dict):
                        raise fail(where_n, 'an object with "text" and "answer_start"', answer)
                    text = field(answer, "text", str, where_n, "an answer string")
                    start = field(answer, "answer_start", int, where_n, "an integer character offset")
                    if start < 0 or start + len(text) > len(context):
                        raise DatasetError(
                            f"{path}: {where_n}.answer_start {start} (+{len(text)} characters) lies outside "
                            f"the context ({len(context)} characters)"
                        )
                    answers.append({"text": text, "answer_start": start})
                start_position = end_position = None
                if answers and answers[0]["text"]:
                    first = answers[0]
                    start_position = char_to_word_offset[first["answer_start"]]
                    end_position = char_to_word_offset[first["answer_start"] + len(first["text"]) - 1]
                examples.append(SquadExample(
                    qas_id=qas_id, question_text=question, context_text=context, doc_tokens=doc_tokens,
                    char_to_word_offset=char_to_word_offset, answers=answers,
                    start_position=start_position, end_position=end_position,
                ))
    return examples


def read_file_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: {what} expected, found a directory") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
