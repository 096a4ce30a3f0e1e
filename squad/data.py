"""Where the SQuAD v1.1 dev set and the WordPiece vocabulary come from.

Resolution order: ``--data-dir``, then ``$OBERT_DATA_DIR``, then (only if allowed) a small built-in
sample written on first use. The sample keeps every code path runnable offline, but its scores mean
nothing: it is flagged ``official=False`` and announced with a loud warning.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import sys
import tempfile
import unicodedata
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from squad.errors import DatasetError

log = logging.getLogger(__name__)

DEFAULT_DATA_ENV = "OBERT_DATA_DIR"
DEV_JSON_NAME = "dev-v1.1.json"
VOCAB_NAMES = ("vocab.txt", "bert-uncased-vocab.txt")

SQUAD_DEV_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json"
SQUAD_DEV_MD5 = "3e85deb501d4e538b6bc56f786231552"
BERT_VOCAB_URL = "https://huggingface.co/bert-base-uncased/resolve/main/vocab.txt"
BERT_VOCAB_SIZE = 30522

SAMPLE_DEV_NAME = "sample-dev-v1.1.json"
SAMPLE_VOCAB_NAME = "sample-vocab.txt"
SAMPLE_SOURCE = "built-in sample (NOT comparable)"

_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 16


@dataclass(frozen=True)
class DatasetFiles:
    """The dev set and vocabulary a run uses, and whether its results can be compared to MLPerf."""

    dev_json: Path
    vocab: Path
    official: bool  # True only for the byte-exact official dev-v1.1.json
    source: str  # for humans: where the files were found


# ----------------------------------------------------------------------------------------------
# Locating the files


def resolve_data_dir(cli_value: str | None) -> Path | None:
    """The data directory from ``--data-dir`` (wins) or ``$OBERT_DATA_DIR``; None when neither is set."""
    if cli_value:
        setting, raw = "--data-dir", cli_value
    elif os.environ.get(DEFAULT_DATA_ENV):
        setting, raw = f"${DEFAULT_DATA_ENV}", os.environ[DEFAULT_DATA_ENV]
    else:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise DatasetError(f"{setting}: {path} {what}; expected a directory holding {DEV_JSON_NAME} and vocab.txt")
    return path


_md5_cache: dict[tuple[str, int, int], str] = {}


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, remembered per (path, size, mtime) so repeated lookups are free."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _md5_cache:
        digest = hashlib.md5()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
        _md5_cache[key] = digest.hexdigest()
    return _md5_cache[key]


def find_dataset(data_dir: Path | None, *, sample_dir: Path, allow_sample: bool = True) -> DatasetFiles:
    """Find ``dev-v1.1.json`` and a vocab in ``data_dir``; fall back to the built-in sample if allowed."""
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DatasetError(f"data dir {data_dir} does not exist or is not a directory")
        dev = data_dir / DEV_JSON_NAME
        vocab = next((data_dir / name for name in VOCAB_NAMES if (data_dir / name).is_file()), None)
        has_dev = dev.is_file()
        if has_dev and vocab is not None:
            official = file_md5(dev) == SQUAD_DEV_MD5
            if not official:
                log.warning(
                    "%s is not the official SQuAD v1.1 dev set (md5 %s, expected %s): accuracy is not "
                    "comparable to MLPerf", dev, file_md5(dev), SQUAD_DEV_MD5,
                )
            return DatasetFiles(dev_json=dev, vocab=vocab, official=official, source=f"data dir {data_dir}")
        if has_dev:
            raise DatasetError(
                f"data dir {data_dir} has {DEV_JSON_NAME} but no vocabulary: expected "
                f"{' or '.join(VOCAB_NAMES)} (the bert-base-uncased WordPiece vocab) beside it"
            )
        if vocab is not None:
            raise DatasetError(
                f"data dir {data_dir} has {vocab.name} but no {DEV_JSON_NAME} (the SQuAD v1.1 dev set); "
                f"put it there or run `obert-harness prepare --download`"
            )
        if not allow_sample:
            raise DatasetError(f"data dir {data_dir} holds neither {DEV_JSON_NAME} nor {' / '.join(VOCAB_NAMES)}")
    elif not allow_sample:
        raise DatasetError(
            f"no data dir given: pass --data-dir or set ${DEFAULT_DATA_ENV} to a directory holding "
            f"{DEV_JSON_NAME} and vocab.txt"
        )
    files = write_sample_dataset(Path(sample_dir))
    _warn_sample(files, data_dir)
    return files


def _warn_sample(files: DatasetFiles, data_dir: Path | None) -> None:
    where = f"no SQuAD files in {data_dir}" if data_dir is not None else "no data dir given"
    banner = "\n".join([
        "",
        "#" * 78,
        "#  USING THE BUILT-IN SAMPLE DATASET: RESULTS ARE NOT COMPARABLE TO MLPERF",
        f"#  ({where}; --data-dir or ${DEFAULT_DATA_ENV} selects the real SQuAD v1.1 dev set)",
        f"#  sample: {files.dev_json}",
        "#" * 78,
        "",
    ])
    log.warning(banner)
    print(banner, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Downloads


def _download_to_temp(url: str, dest_dir: Path, name: str, *, progress: bool, timeout: float) -> Path:
    """Fetch ``url`` into a temp file in ``dest_dir`` (renamed into place by the caller once verified)."""
    from tqdm import tqdm

    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}", disable=not progress,
                      leave=False) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DatasetError(
            f"could not download {name} from {url}: {reason}; offline? put {name} into {dest_dir} instead"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def download_squad_dev(
    dest_dir: Path, *, url: str = SQUAD_DEV_URL, expected_md5: str = SQUAD_DEV_MD5, progress: bool = True,
    timeout: float = _DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download the SQuAD v1.1 dev set into ``dest_dir`` (skipped if already there and intact)."""
    dest_dir = Path(dest_dir)
    dest = dest_dir / DEV_JSON_NAME
    if dest.is_file() and file_md5(dest) == expected_md5:
        return dest
    tmp = _download_to_temp(url, dest_dir, DEV_JSON_NAME, progress=progress, timeout=timeout)
    try:
        got = file_md5(tmp)
        if got != expected_md5:
            raise DatasetError(
                f"downloaded {DEV_JSON_NAME} from {url} has md5 {got}, expected {expected_md5}; the file was discarded"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def download_vocab(
    dest_dir: Path, *, url: str = BERT_VOCAB_URL, progress: bool = True, timeout: float = _DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download the bert-base-uncased vocab.txt into ``dest_dir`` (skipped if a valid one is there)."""
    dest_dir = Path(dest_dir)
    dest = dest_dir / "vocab.txt"
    if dest.is_file() and _vocab_problem(dest) is None:
        return dest
    tmp = _download_to_temp(url, dest_dir, "vocab.txt", progress=progress, timeout=timeout)
    try:
        problem = _vocab_problem(tmp)
        if problem is not None:
            raise DatasetError(f"downloaded vocab.txt from {url} {problem}; the file was discarded")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _vocab_problem(path: Path) -> str | None:
    """Why ``path`` is not the bert-base-uncased vocab (no md5 is published), or None if it looks right."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return f"is unreadable ({exc})"
    if len(lines) != BERT_VOCAB_SIZE:
        return f"has {len(lines)} lines, expected {BERT_VOCAB_SIZE}"
    if lines[0] != "[PAD]":
        return f"starts with {lines[0][:20]!r}, expected '[PAD]'"
    return None


# ----------------------------------------------------------------------------------------------
# The built-in sample. All text is original (invented places and people), written for this project.

_LIGHTHOUSE = (
    "Harrowmere Lighthouse stands on a granite spur at the northern tip of the Isle of Caddow. Its tower "
    "was completed in 1873 by the engineer Tobias Wrenfield, who insisted that every block be cut from "
    "stone quarried on the island itself. The lamp room holds a rotating lens that flashes white twice "
    "every fifteen seconds, a pattern sailors call the Caddow double. Since 1961 the light has run "
    "without a resident keeper, although volunteers from the village of Lowen Cross still climb its 142 "
    "steps each spring to polish the brass."
)

# (month, vessels counted, prevailing wind, how the quiet hours were spent): composed into one long
# paragraph so the sample has a context that needs several 384-token windows.
_LOG_MONTHS = (
    ("January", 14, "north", "re-leading a cracked pane on the seaward side of the gallery"),
    ("February", 9, "north-east", "copying the tide tables into a fresh ledger by candlelight"),
    ("March", 22, "east", "scraping salt from the brass rails until they shone again"),
    ("April", 31, "south-east", "teaching the new assistant how to trim and measure a wick"),
    ("May", 27, "south", "mending the rope ladder that hangs below the landing stage"),
    ("June", 40, "south-west", "painting the iron door a dark shade of green"),
    ("July", 38, "west", "counting the seabirds that nested on the lower ledges"),
    ("August", 45, "west", "unloading crates of lamp oil from the supply boat Marigold"),
    ("September", 29, "north-west", "repairing the weather vane after a heavy squall"),
    ("October", 17, "south-west", "sorting the winter stores of flour, salt and tallow"),
    ("November", 12, "north", "reading old letters left behind by earlier keepers"),
    ("December", 8, "north-east", "carving small wooden boats for the children of Lowen Cross"),
)

_LOGBOOK = " ".join(
    [
        "The surviving logbooks of Harrowmere describe an ordinary year of work at the light, kept in a "
        "neat and patient hand."
    ]
    + [
        f"In {month} the keeper counted {ships} vessels rounding the spur, noted that the wind blew mostly "
        f"from the {wind}, and spent the quiet hours {chore}."
        for month, ships, wind, chore in _LOG_MONTHS
    ]
    + [
        "On the last page of the final volume the keeper thanked the fishermen of Lowen Cross for "
        "their kindness and wrote that the lamp had not failed on a single night."
    ]
)

_BAKERY = (
    "The Quillfeather Cooperative is a bakery owned by its twenty-three workers in the small town of "
    "Marrowby. It was founded in 1994 by Zoë Marchetti and Renée Okonkwo-Lind, two pastry cooks who had "
    "trained together in Lyon. The cooperative is best known for its café crème buns and for a dark rye "
    "loaf nicknamed \"the anchor\" because of its weight. Every decision about prices is taken at a "
    "monthly meeting where each member, including the apprentices, holds one vote."
)

_WHEEL = (
    "During the flour shortage of the late 1990s, the cooperative survived by milling its own grain with "
    "a restored water wheel on the Pell brook. Members still describe those years as the 'slow bread' "
    "period. The wheel, repaired by the carpenter Idris Fenn, now turns only on festival days, when "
    "visitors can buy loaves baked from flour ground that morning."
)

_RIVER = (
    "The Ostvel is a slow, meandering river that rises in the Tarran Hills and flows 218 kilometres "
    "north-east before joining the sea at Brackwater. Its basin is home to roughly 40,000 people, most of "
    "whom live in small farming villages. A weir built at Ennis Ford in 1908 marks the tidal limit; below "
    "it the water turns brackish and the banks are lined with reed beds."
)

_OTTERS = (
    "Otters returned to the river after a long absence. A survey by the Brackwater Naturalists' Society "
    "counted eleven holts in 2019, compared with none in 1985. The society credits the recovery to "
    "cleaner water (nitrate levels fell by about half) and to the fencing of grazing land along the "
    "upper reaches."
)

# Each question: (question, [(answer text, anchor)]). The answer is the first occurrence of its text at
# or after the first occurrence of the anchor (the anchor defaults to the answer itself).
_SampleQA = tuple[str, list[tuple[str, str | None]]]
_SAMPLE_ARTICLES: tuple[tuple[str, tuple[tuple[str, tuple[_SampleQA, ...]], ...]], ...] = (
    ("Harrowmere_Lighthouse", (
        (_LIGHTHOUSE, (
            ("Who built Harrowmere Lighthouse?", [("Tobias Wrenfield", None), ("the engineer Tobias Wrenfield", None)]),
            ("In what year was the tower completed?", [("1873", None)]),
            ("How often does the lens flash?", [("twice every fifteen seconds", None)]),
            ("What do sailors call the flashing pattern?", [("the Caddow double", None), ("Caddow double", None)]),
            ("How many steps does the tower have?", [("142", None)]),
            ("Where do the volunteers come from?", [("the village of Lowen Cross", None), ("Lowen Cross", None)]),
        )),
        (_LOGBOOK, (
            ("How many vessels did the keeper count in January?", [("14", "In January")]),
            ("From which direction did the wind blow in October?", [("south-west", "In October")]),
            ("What was the name of the supply boat?", [("Marigold", None)]),
            ("What did the keeper carve in December?", [("small wooden boats", None)]),
            ("Whom did the keeper thank on the last page?", [("the fishermen of Lowen Cross", None)]),
        )),
    )),
    ("Quillfeather_Cooperative", (
        (_BAKERY, (
            ("Who founded the Quillfeather Cooperative?", [("Zoë Marchetti and Renée Okonkwo-Lind", None)]),
            ("How many workers own the bakery?", [("twenty-three", None)]),
            ("What is the dark rye loaf nicknamed?", [("the anchor", "\"the anchor"), ("\"the anchor\"", None)]),
            ("Where did the founders train?", [("Lyon", None)]),
            ("How are decisions about prices taken?", [("at a monthly meeting", None)]),
        )),
        (_WHEEL, (
            ("When did the flour shortage happen?", [("the late 1990s", None), ("late 1990s", None)]),
            ("Who repaired the water wheel?", [("Idris Fenn", None), ("the carpenter Idris Fenn", None)]),
            ("What do members call the shortage years?", [("the 'slow bread' period", None)]),
            ("When does the wheel turn now?", [("only on festival days", None)]),
        )),
    )),
    ("Ostvel_River", (
        (_RIVER, (
            ("Where does the Ostvel rise?", [("the Tarran Hills", None), ("Tarran Hills", None)]),
            ("How long is the Ostvel?", [("218 kilometres", None)]),
            ("In which direction does the Ostvel flow?", [("north-east", None)]),
            ("How many people live in the Ostvel basin?", [("roughly 40,000", None), ("40,000", None)]),
            ("What marks the tidal limit of the river?", [("A weir built at Ennis Ford in 1908", None)]),
        )),
        (_OTTERS, (
            ("Which society carried out the otter survey?", [("the Brackwater Naturalists' Society", None)]),
            ("How many holts were counted in 2019?", [("eleven", None)]),
            ("By how much did nitrate levels fall?", [("about half", None)]),
            ("What else helped the otters recover?", [("the fencing of grazing land along the upper reaches", None)]),
        )),
    )),
)


def _answer_start(context: str, text: str, anchor: str | None) -> int:
    base = context.index(anchor) if anchor else 0
    start = context.index(text, base)
    assert context[start:start + len(text)] == text
    return start


def sample_dataset_json() -> dict:
    """The built-in sample in SQuAD v1.1 format; every answer_start is checked against its context."""
    data = []
    question_number = 0
    for title, paragraphs in _SAMPLE_ARTICLES:
        out_paragraphs = []
        for context, qas in paragraphs:
            out_qas = []
            for question, answers in qas:
                question_number += 1
                out_qas.append({
                    "answers": [{"answer_start": _answer_start(context, text, anchor), "text": text}
                                for text, anchor in answers],
                    "question": question,
                    "id": f"sample{question_number:04d}",
                })
            out_paragraphs.append({"context": context, "qas": out_qas})
        data.append({"title": title, "paragraphs": out_paragraphs})
    return {"data": data, "version": "1.1"}


def _is_punctuation(char: str) -> bool:
    # BERT's definition: all non-alphanumeric ASCII counts as punctuation, plus Unicode P* categories.
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _basic_tokens(text: str) -> list[str]:
    """BERT uncased basic tokenization (lowercase, strip accents, split punctuation) for plain text."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    tokens: list[str] = []
    for word in text.split():
        current = ""
        for char in word:
            if _is_punctuation(char):
                if current:
                    tokens.append(current)
                tokens.append(char)
                current = ""
            else:
                current += char
        if current:
            tokens.append(current)
    return tokens


def sample_vocab(dataset: dict) -> list[str]:
    """A WordPiece vocab covering the sample: BERT's special-token layout, characters, then words."""
    words: set[str] = set()
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            words.update(_basic_tokens(paragraph["context"]))
            for qa in paragraph["qas"]:
                words.update(_basic_tokens(qa["question"]))
                for answer in qa["answers"]:
                    words.update(_basic_tokens(answer["text"]))
    chars = set("abcdefghijklmnopqrstuvwxyz0123456789") | {c for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}
    chars.update(c for word in words for c in word)
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted(chars)
    vocab += [f"##{c}" for c in sorted(chars)]
    vocab += sorted(words - chars)
    return vocab


def write_sample_dataset(sample_dir: Path) -> DatasetFiles:
    """Write the built-in sample (dev JSON + vocab) into ``sample_dir``, only where the bytes differ."""
    dataset = sample_dataset_json()
    contents = {
        SAMPLE_DEV_NAME: (json.dumps(dataset, ensure_ascii=False, indent=1) + "\n").encode("utf-8"),
        SAMPLE_VOCAB_NAME: ("\n".join(sample_vocab(dataset)) + "\n").encode("utf-8"),
    }
    sample_dir = Path(sample_dir)
    try:
        sample_dir.mkdir(parents=True, exist_ok=True)
        for name, payload in contents.items():
            path = sample_dir / name
            if path.is_file() and path.read_bytes() == payload:
                continue
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=sample_dir)
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, path)
    except OSError as exc:
        raise DatasetError(f"could not write the built-in sample dataset into {sample_dir}: {exc}") from None
    return DatasetFiles(
        dev_json=sample_dir / SAMPLE_DEV_NAME, vocab=sample_dir / SAMPLE_VOCAB_NAME, official=False,
        source=SAMPLE_SOURCE,
    )
