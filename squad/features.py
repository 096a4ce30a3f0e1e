"""SQuAD v1.1 questions (:mod:`squad.examples`) converted into BERT input windows, following the MLPerf BERT reference.

The reference (MLCommons ``language/bert``, derived from Google BERT's ``run_squad.py``) splits each
context on whitespace, WordPiece-tokenizes every word on its own, and cuts the result into windows of
``max_seq_length`` tokens whose *start* advances by ``doc_stride`` doc tokens. On the official dev set
that gives exactly 10,833 windows, LoadGen's sample count for BERT. The same rules are applied here,
with the WordPiece step done by the Rust ("fast") tokenizer, which gives identical tokens, much faster.

Converted features are cached on disk under a key that covers the dataset bytes, the vocab bytes, the
window parameters and the cache format, so a changed input can never be served stale features.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from squad.errors import ConfigError, DatasetError
from squad.examples import SquadExample, parse_squad_examples, read_file_bytes

if TYPE_CHECKING:  # transformers is slow to import; only building features needs it
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

# Bump whenever the conversion or the cache layout changes: old cache entries then stop matching.
FEATURE_FORMAT_VERSION = 1
# Window count of the official dev set with the default parameters (MLPerf BERT performance sample count).
OFFICIAL_DEV_FEATURE_COUNT = 10833

_ARRAYS_FILE = "features.npz"
_MANIFEST_FILE = "manifest.json"
_TMP_PREFIX = ".tmp-"
_ENCODE_CHUNK = 256  # paragraphs per tokenizer call: large enough for throughput, small for progress


@dataclass(frozen=True)
class FeatureParams:
    """Window geometry (defaults are MLPerf BERT's)."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64

    def __post_init__(self) -> None:
        if self.max_query_length < 1 or self.doc_stride < 1:
            raise ConfigError(f"max_query_length and doc_stride must be >= 1, got {self}")
        # [CLS] query [SEP] ... [SEP] must leave room for at least one document token.
        if self.max_seq_length < self.max_query_length + 4:
            raise ConfigError(f"max_seq_length must be >= max_query_length + 4, got {self}")


@dataclass
class FeatureSet:
    """All windows of a dataset, as model inputs plus what post-processing needs to map answers back."""

    input_ids: np.ndarray  # int32 [N, max_seq_length] (models take int64: backends widen per batch)
    input_mask: np.ndarray  # uint8 [N, max_seq_length]
    segment_ids: np.ndarray  # uint8 [N, max_seq_length]
    seq_lengths: np.ndarray  # int32 [N], non-pad tokens
    example_index: np.ndarray  # int32 [N], into ``examples``
    doc_span_index: np.ndarray  # int32 [N], window number within its example
    tokens: Sequence[list[str]]  # the non-pad tokens of each window
    token_to_orig_map: Sequence[dict[int, int]]  # window position -> word index in the example's doc_tokens
    token_is_max_context: Sequence[dict[int, bool]]  # window position -> is this the token's best window
    examples: list[SquadExample]
    params: FeatureParams
    fingerprint: str  # the cache key (plus ":first<n>" for a subset)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


# ----------------------------------------------------------------------------------------------
# Tokenizer


def _vocab_tokens(raw: bytes, path: Path) -> list[str]:
    """Vocab entries by id, read the way transformers' ``load_vocab`` reads them (one per line)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: vocabulary is not UTF-8 text ({exc})") from None
    tokens = [line.rstrip("\n") for line in io.StringIO(text, newline=None).readlines()]
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in set(tokens)]
    if missing:
        raise DatasetError(
            f"{path}: not a BERT WordPiece vocabulary (one token per line): {', '.join(missing)} missing"
        )
    first_line: dict[str, int] = {}
    for line, token in enumerate(tokens, start=1):
        if token in first_line:
            # the tokenizer maps a repeated token to its last line, an id the model may not have
            raise DatasetError(f"{path}: line {line} repeats the token {token!r} of line {first_line[token]}; "
                               "a WordPiece vocabulary has one line per distinct token")
        first_line[token] = line
    return tokens


def make_tokenizer(vocab: Path) -> PreTrainedTokenizerFast:
    """The uncased BERT WordPiece tokenizer (Rust implementation) for a vocab file."""
    vocab = Path(vocab)
    _vocab_tokens(read_file_bytes(vocab, "vocabulary"), vocab)
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


def _plain_backend(tokenizer: PreTrainedTokenizerFast):
    """The Rust tokenizer without truncation/padding (a copy if the caller configured either)."""
    backend = tokenizer.backend_tokenizer
    if backend.truncation is None and backend.padding is None:
        return backend
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(backend.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def _id_to_token_table(tokenizer: PreTrainedTokenizerFast) -> np.ndarray:
    vocab = tokenizer.get_vocab()
    table = np.empty(max(vocab.values()) + 1, dtype=object)
    for token, index in vocab.items():
        table[index] = token
    return table


# ----------------------------------------------------------------------------------------------
# Windows


def doc_spans(num_doc_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    """(start, length) of each window over the doc tokens: starts advance by ``doc_stride`` (reference)."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < num_doc_tokens:
        length = min(num_doc_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_doc_tokens:
            break
        start += min(length, doc_stride)
    return spans


def max_context_mask(spans: Sequence[tuple[int, int]], num_doc_tokens: int) -> np.ndarray:
    """bool [n_spans, num_doc_tokens]: True where a span is the token's best window.

    The reference scores a token in a span by min(left context, right context) + 0.01 * span length and
    keeps the first span on ties; ``argmax`` returns the first maximum, so it picks the same span.
    """
    if not spans:
        return np.zeros((0, num_doc_tokens), dtype=bool)
    scores = np.full((len(spans), num_doc_tokens), -np.inf)
    positions = np.arange(num_doc_tokens)
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        inside = positions[start:end + 1]
        scores[i, start:end + 1] = np.minimum(inside - start, end - inside) + 0.01 * length
    best = scores.argmax(axis=0)
    return best[None, :] == np.arange(len(spans))[:, None]


class WindowView(Sequence):
    """A read-only sequence whose item ``i`` is ``build(windows[i])``, computed when read."""

    def __init__(self, build: Callable[[int], Any], windows: range) -> None:
        self._build = build
        self._windows = windows

    def __len__(self) -> int:
        return len(self._windows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return WindowView(self._build, self._windows[index])
        return self._build(self._windows[index])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return NotImplemented if not isinstance(other, Sequence) else False
        return all(a == b for a, b in zip(self, other))

    __hash__ = None  # mutable-sequence semantics: not hashable

    def __repr__(self) -> str:
        return f"WindowView({len(self)} windows)"


@dataclass
class _CompactFeatures:
    """Everything a FeatureSet is rebuilt from: the cached form (no Python objects)."""

    input_ids: np.ndarray  # int32 [N, L]
    seq_lengths: np.ndarray  # int32 [N]
    doc_offsets: np.ndarray  # int32 [N], position of the first doc token (= query length + 2)
    example_index: np.ndarray  # int32 [N]
    doc_span_index: np.ndarray  # int32 [N]
    orig_index: np.ndarray  # int32 [sum of doc lengths], word index of each window doc token, in order
    is_max_context: np.ndarray  # bool, aligned with orig_index

    def doc_lengths(self) -> np.ndarray:
        return self.seq_lengths - self.doc_offsets - 1  # minus the final [SEP]


def _compact_features(
    examples: Sequence[SquadExample], tokenizer: PreTrainedTokenizerFast, params: FeatureParams, progress: bool,
) -> _CompactFeatures:
    from tqdm import tqdm

    backend = _plain_backend(tokenizer)
    cls_id = tokenizer.convert_tokens_to_ids("[CLS]")
    sep_id = tokenizer.convert_tokens_to_ids("[SEP]")

    # Paragraphs are shared by several questions: WordPiece each distinct one once.
    doc_of_example = np.empty(len(examples), dtype=np.int64)
    doc_key_to_index: dict[tuple[str, ...], int] = {}
    doc_words: list[list[str]] = []
    for i, example in enumerate(examples):
        key = tuple(example.doc_tokens)
        if key not in doc_key_to_index:
            doc_key_to_index[key] = len(doc_words)
            doc_words.append(list(example.doc_tokens))
        doc_of_example[i] = doc_key_to_index[key]

    doc_ids: list[np.ndarray] = []
    doc_tok_to_orig: list[np.ndarray] = []
    with tqdm(total=len(doc_words) + len(examples), desc="tokenizing SQuAD", unit="text",
              disable=not progress, leave=False) as bar:
        for lo in range(0, len(doc_words), _ENCODE_CHUNK):
            chunk = doc_words[lo:lo + _ENCODE_CHUNK]
            # Each word is tokenized on its own (is_pretokenized), exactly like the reference's loop
            # over doc_tokens; word_ids gives tok_to_orig_index. Empty paragraphs are skipped: the
            # tokenizer rejects empty pre-tokenized input.
            nonempty = [words for words in chunk if words]
            encodings = iter(backend.encode_batch(nonempty, is_pretokenized=True, add_special_tokens=False))
            for words in chunk:
                if not words:
                    doc_ids.append(np.zeros(0, np.int64))
                    doc_tok_to_orig.append(np.zeros(0, np.int64))
                    continue
                encoding = next(encodings)
                doc_ids.append(np.asarray(encoding.ids, dtype=np.int64))
                doc_tok_to_orig.append(np.asarray(encoding.word_ids, dtype=np.int64))
            bar.update(len(chunk))
        query_ids: list[list[int]] = []
        for lo in range(0, len(examples), _ENCODE_CHUNK * 8):
            chunk_examples = examples[lo:lo + _ENCODE_CHUNK * 8]
            encodings = backend.encode_batch([e.question_text for e in chunk_examples], add_special_tokens=False)
            query_ids.extend(enc.ids[:params.max_query_length] for enc in encodings)
            bar.update(len(chunk_examples))

    records: list[tuple[int, int, int, int, int, int]] = []  # example, span no., doc, query len, start, length
    span_cache: dict[tuple[int, int], tuple[list[tuple[int, int]], np.ndarray]] = {}
    for example_number in tqdm(range(len(examples)), desc="building windows", unit="question",
                               disable=not progress, leave=False):
        doc = int(doc_of_example[example_number])
        query_length = len(query_ids[example_number])
        max_tokens_for_doc = params.max_seq_length - query_length - 3
        if (doc, max_tokens_for_doc) not in span_cache:
            spans = doc_spans(len(doc_ids[doc]), max_tokens_for_doc, params.doc_stride)
            span_cache[doc, max_tokens_for_doc] = spans, max_context_mask(spans, len(doc_ids[doc]))
        spans, _ = span_cache[doc, max_tokens_for_doc]
        for span_number, (start, length) in enumerate(spans):
            records.append((example_number, span_number, doc, query_length, start, length))

    n, seq = len(records), params.max_seq_length
    input_ids = np.zeros((n, seq), dtype=np.int32)
    seq_lengths = np.empty(n, dtype=np.int32)
    doc_offsets = np.empty(n, dtype=np.int32)
    orig_parts: list[np.ndarray] = []
    max_parts: list[np.ndarray] = []
    for f, (example_number, span_number, doc, query_length, start, length) in enumerate(records):
        offset = query_length + 2
        row = input_ids[f]
        row[0] = cls_id
        row[1:offset - 1] = query_ids[example_number]
        row[offset - 1] = sep_id
        row[offset:offset + length] = doc_ids[doc][start:start + length]
        row[offset + length] = sep_id
        seq_lengths[f] = offset + length + 1
        doc_offsets[f] = offset
        orig_parts.append(doc_tok_to_orig[doc][start:start + length])
        max_tokens_for_doc = params.max_seq_length - query_length - 3
        max_parts.append(span_cache[doc, max_tokens_for_doc][1][span_number, start:start + length])
    return _CompactFeatures(
        input_ids=input_ids,
        seq_lengths=seq_lengths,
        doc_offsets=doc_offsets,
        example_index=np.fromiter((r[0] for r in records), dtype=np.int32, count=n),
        doc_span_index=np.fromiter((r[1] for r in records), dtype=np.int32, count=n),
        orig_index=np.concatenate(orig_parts).astype(np.int32) if orig_parts else np.zeros(0, np.int32),
        is_max_context=np.concatenate(max_parts) if max_parts else np.zeros(0, bool),
    )


def _assemble(
    compact: _CompactFeatures, examples: list[SquadExample], id_to_token: np.ndarray, params: FeatureParams,
    fingerprint: str,
) -> FeatureSet:
    """Expand the compact form into the FeatureSet API (the one code path for fresh and cached sets)."""
    n, seq = compact.input_ids.shape
    positions = np.arange(seq)
    # Compact dtypes (int32 ids, uint8 mask and segments: 25 MB instead of 100 MB for the dev set);
    # backends widen each batch to the model's int64 inputs.
    input_mask = (positions[None, :] < compact.seq_lengths[:, None]).astype(np.uint8)
    segment_ids = ((positions[None, :] >= compact.doc_offsets[:, None]) & (input_mask == 1)).astype(np.uint8)
    doc_lengths = compact.doc_lengths()
    starts = np.cumsum(doc_lengths) - doc_lengths

    # Only post-processing reads these, window by window: built on access, they cost nothing during a
    # run (as Python lists and dicts for all 10,833 dev windows they would hold ~250 MB).
    def tokens(f: int) -> list[str]:
        return id_to_token[compact.input_ids[f, :compact.seq_lengths[f]]].tolist()

    def doc_positions(f: int) -> tuple[range, slice]:
        offset, length, start = int(compact.doc_offsets[f]), int(doc_lengths[f]), int(starts[f])
        return range(offset, offset + length), slice(start, start + length)

    def token_to_orig_map(f: int) -> dict[int, int]:
        positions, part = doc_positions(f)
        return dict(zip(positions, compact.orig_index[part].tolist()))

    def token_is_max_context(f: int) -> dict[int, bool]:
        positions, part = doc_positions(f)
        return dict(zip(positions, compact.is_max_context[part].tolist()))

    return FeatureSet(
        input_ids=compact.input_ids,
        input_mask=input_mask,
        segment_ids=segment_ids,
        seq_lengths=compact.seq_lengths.astype(np.int32),
        example_index=compact.example_index.astype(np.int32),
        doc_span_index=compact.doc_span_index.astype(np.int32),
        tokens=WindowView(tokens, range(n)),
        token_to_orig_map=WindowView(token_to_orig_map, range(n)),
        token_is_max_context=WindowView(token_is_max_context, range(n)),
        examples=examples,
        params=params,
        fingerprint=fingerprint,
    )


def convert_examples_to_features(
    examples: Sequence[SquadExample], tokenizer: PreTrainedTokenizerFast, params: FeatureParams = FeatureParams(),
    *, progress: bool = True, fingerprint: str = "",
) -> FeatureSet:
    """Cut every example into ``[CLS] query [SEP] doc-span [SEP]`` windows (MLPerf BERT reference rules)."""
    examples = list(examples)
    compact = _compact_features(examples, tokenizer, params, progress)
    return _assemble(compact, examples, _id_to_token_table(tokenizer), params, fingerprint)


def select_features(features: FeatureSet, count: int) -> FeatureSet:
    """The first ``count`` windows (for quick runs); the fingerprint records the cut."""
    if count < 1:
        raise ConfigError(f"feature count must be >= 1, got {count}")
    if count >= len(features):
        return features
    base = features.fingerprint.split(":")[0]
    return FeatureSet(
        input_ids=features.input_ids[:count],
        input_mask=features.input_mask[:count],
        segment_ids=features.segment_ids[:count],
        seq_lengths=features.seq_lengths[:count],
        example_index=features.example_index[:count],
        doc_span_index=features.doc_span_index[:count],
        tokens=features.tokens[:count],
        token_to_orig_map=features.token_to_orig_map[:count],
        token_is_max_context=features.token_is_max_context[:count],
        examples=features.examples,
        params=features.params,
        fingerprint=f"{base}:first{count}",
    )


# ----------------------------------------------------------------------------------------------
# Cache


def feature_cache_key(dataset_sha256: str, vocab_sha256: str, params: FeatureParams) -> str:
    """sha256 over everything the features depend on."""
    payload = json.dumps({
        "dataset_sha256": dataset_sha256,
        "vocab_sha256": vocab_sha256,
        "params": asdict(params),
        "format_version": FEATURE_FORMAT_VERSION,
    }, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_or_build_features(
    dev_json: Path, vocab: Path, params: FeatureParams, cache_dir: Path, *, progress: bool = True,
) -> FeatureSet:
    """Features for ``dev_json``: from ``cache_dir/<key>/`` when present and intact, else built and cached."""
    dev_json, vocab, cache_dir = Path(dev_json), Path(vocab), Path(cache_dir)
    dataset_raw = read_file_bytes(dev_json, "SQuAD dataset")
    vocab_raw = read_file_bytes(vocab, "vocabulary")
    id_to_token = np.array(_vocab_tokens(vocab_raw, vocab), dtype=object)
    key = feature_cache_key(
        hashlib.sha256(dataset_raw).hexdigest(), hashlib.sha256(vocab_raw).hexdigest(), params
    )
    # Parsing validates the dataset even on a cache hit, and the examples are not cached: they come
    # from the very bytes the key was computed from.
    examples = parse_squad_examples(dataset_raw, dev_json)
    entry = cache_dir / key
    if entry.is_dir():
        try:
            compact = _read_cache_entry(entry, key, params, examples, len(id_to_token))
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the entry, rebuilding fixes it
            log.warning("feature cache %s is unusable (%s); rebuilding it", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
        else:
            log.info("features: %d windows from cache %s", len(compact.seq_lengths), entry)
            return _assemble(compact, examples, id_to_token, params, key)

    compact = _compact_features(examples, make_tokenizer(vocab), params, progress)
    try:
        _write_cache_entry(entry, key, params, compact, dev_json, vocab)
    except OSError as exc:  # a read-only or full disk costs the cache, not the run
        log.warning("could not write the feature cache %s: %s", entry, exc)
    return _assemble(compact, examples, id_to_token, params, key)


def _write_cache_entry(
    entry: Path, key: str, params: FeatureParams, compact: _CompactFeatures, dev_json: Path, vocab: Path,
) -> None:
    """Write into a private temp dir, then rename: a killed run never leaves a half-written entry."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temp_dirs(entry.parent)
    tmp = entry.parent / f"{_TMP_PREFIX}{key[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        np.savez(tmp / _ARRAYS_FILE, **asdict(compact))
        manifest = {
            "key": key, "format_version": FEATURE_FORMAT_VERSION, "params": asdict(params),
            "features": int(len(compact.seq_lengths)), "dev_json": str(dev_json), "vocab": str(vocab),
        }
        (tmp / _MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        try:
            os.rename(tmp, entry)
        except OSError:
            if not entry.is_dir():
                raise
            # another process finished the same entry first; keep theirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_abandoned_temp_dirs(cache_dir: Path) -> None:
    """Delete temp dirs left by killed runs (their writer process no longer exists)."""
    for candidate in cache_dir.glob(f"{_TMP_PREFIX}*"):
        try:
            pid = int(candidate.name.split("-")[2])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError):
            shutil.rmtree(candidate, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else


def _read_cache_entry(
    entry: Path, key: str, params: FeatureParams, examples: list[SquadExample], vocab_size: int,
) -> _CompactFeatures:
    """Load and sanity-check an entry; raises on anything inconsistent (the caller rebuilds)."""
    manifest = json.loads((entry / _MANIFEST_FILE).read_text())
    if manifest.get("key") != key or manifest.get("format_version") != FEATURE_FORMAT_VERSION:
        raise ValueError("manifest does not match the cache key")
    with np.load(entry / _ARRAYS_FILE, allow_pickle=False) as arrays:
        compact = _CompactFeatures(**{name: arrays[name] for name in _CompactFeatures.__dataclass_fields__})
    n = len(compact.seq_lengths)
    if compact.input_ids.shape != (n, params.max_seq_length) or n != manifest.get("features"):
        raise ValueError("array shapes do not match the manifest")
    for name in ("doc_offsets", "example_index", "doc_span_index"):
        if getattr(compact, name).shape != (n,):
            raise ValueError(f"{name} has the wrong shape")
    doc_lengths = compact.doc_lengths()
    if n and (doc_lengths.min() < 1 or compact.seq_lengths.max() > params.max_seq_length):
        raise ValueError("window lengths out of range")
    flat_shape = (int(doc_lengths.sum()),)
    if compact.orig_index.shape != flat_shape or compact.is_max_context.shape != flat_shape:
        raise ValueError("token maps do not match the window lengths")
    if n and (compact.example_index.min() < 0 or compact.example_index.max() >= len(examples)):
        raise ValueError("example index out of range")
    if n and (compact.input_ids.min() < 0 or compact.input_ids.max() >= vocab_size):
        raise ValueError("token id out of range")
    return compact
