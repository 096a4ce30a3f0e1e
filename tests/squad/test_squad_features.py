"""SQuAD reading and window conversion: MLPerf reference semantics, fast-vs-slow tokenizer parity, cache."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from squad import features as squad_features
from harness.errors import ConfigError, DatasetError
from squad.examples import SquadExample, load_squad_examples, split_context
from squad.features import (
    OFFICIAL_DEV_FEATURE_COUNT,
    FeatureParams,
    FeatureSet,
    convert_examples_to_features,
    load_or_build_features,
    make_tokenizer,
    select_features,
)

# ---- an independent, literal implementation of the reference rules (slow tokenizer) -----------------


def reference_features(examples: list[SquadExample], slow_tokenizer, params: FeatureParams) -> list[dict]:
    """Windows built step by step as the MLPerf BERT reference does, with transformers' slow tokenizer."""
    out = []
    tokenized_docs: dict[tuple[str, ...], tuple[list[int], list[str]]] = {}  # only saves time
    for example_index, example in enumerate(examples):
        query = slow_tokenizer.tokenize(example.question_text)[:params.max_query_length]
        if tuple(example.doc_tokens) not in tokenized_docs:
            tok_to_orig, doc = [], []
            for i, word in enumerate(example.doc_tokens):
                for piece in slow_tokenizer.tokenize(word):
                    tok_to_orig.append(i)
                    doc.append(piece)
            tokenized_docs[tuple(example.doc_tokens)] = tok_to_orig, doc
        tok_to_orig, doc = tokenized_docs[tuple(example.doc_tokens)]
        max_doc = params.max_seq_length - len(query) - 3
        spans, start = [], 0
        while start < len(doc):
            length = min(len(doc) - start, max_doc)
            spans.append((start, length))
            if start + length == len(doc):
                break
            start += min(length, params.doc_stride)

        def is_max_context(span_number: int, position: int) -> bool:
            best_score, best_span = None, None
            for n, (s, l) in enumerate(spans):
                if s <= position <= s + l - 1:
                    score = min(position - s, s + l - 1 - position) + 0.01 * l
                    if best_score is None or score > best_score:
                        best_score, best_span = score, n
            return best_span == span_number

        for span_number, (s, l) in enumerate(spans):
            tokens = ["[CLS]", *query, "[SEP]"]
            segment = [0] * len(tokens)
            orig_map, max_map = {}, {}
            for i in range(l):
                orig_map[len(tokens)] = tok_to_orig[s + i]
                max_map[len(tokens)] = is_max_context(span_number, s + i)
                tokens.append(doc[s + i])
                segment.append(1)
            tokens.append("[SEP]")
            segment.append(1)
            ids = slow_tokenizer.convert_tokens_to_ids(tokens)
            pad = params.max_seq_length - len(ids)
            out.append({
                "example_index": example_index, "doc_span_index": span_number, "tokens": tokens,
                "input_ids": ids + [0] * pad, "input_mask": [1] * len(ids) + [0] * pad,
                "segment_ids": segment + [0] * pad, "token_to_orig_map": orig_map, "token_is_max_context": max_map,
            })
    return out


def assert_same_as_reference(features: FeatureSet, expected: list[dict]) -> None:
    assert len(features) == len(expected)
    for f, want in enumerate(expected):
        assert features.tokens[f] == want["tokens"], f"window {f}"
        assert features.input_ids[f].tolist() == want["input_ids"], f"window {f}"
        assert features.input_mask[f].tolist() == want["input_mask"], f"window {f}"
        assert features.segment_ids[f].tolist() == want["segment_ids"], f"window {f}"
        assert features.token_to_orig_map[f] == want["token_to_orig_map"], f"window {f}"
        assert features.token_is_max_context[f] == want["token_is_max_context"], f"window {f}"
        assert int(features.example_index[f]) == want["example_index"]
        assert int(features.doc_span_index[f]) == want["doc_span_index"]
        assert int(features.seq_lengths[f]) == len(want["tokens"])


def make_example(context: str, question: str = "who kept the light?", qas_id: str = "q") -> SquadExample:
    doc_tokens, offsets = split_context(context)
    return SquadExample(qas_id=qas_id, question_text=question, context_text=context, doc_tokens=doc_tokens,
                        char_to_word_offset=offsets, answers=[], start_position=None, end_position=None)


@pytest.fixture(scope="module")
def sample_tokenizer(sample_dataset):
    return make_tokenizer(sample_dataset.vocab)


# ---- the real dev set ---------------------------------------------------------------------------


def test_official_dev_set_gives_10833_windows(dev_features):
    f = dev_features
    assert len(f) == OFFICIAL_DEV_FEATURE_COUNT == 10833
    assert len(f.examples) == 10570
    assert len({e.context_text for e in f.examples}) == 2067
    for name, dtype in (("input_ids", np.int32), ("input_mask", np.uint8), ("segment_ids", np.uint8)):
        array = getattr(f, name)  # compact in memory; backends widen each batch to int64
        assert array.dtype == dtype and array.shape == (10833, 384)
    for name in ("seq_lengths", "example_index", "doc_span_index"):
        assert getattr(f, name).dtype == np.int32 and getattr(f, name).shape == (10833,)
    assert (f.input_mask.sum(axis=1) == f.seq_lengths).all()
    assert f.params == FeatureParams() and len(f.fingerprint) == 64
    assert len(set(f.example_index.tolist())) == 10570  # every question has at least one window


def test_fast_tokenizer_matches_slow_reference_on_real_contexts(dev_files, dev_features):
    """A few hundred real paragraphs (every 7th, with all their questions) against the literal reference."""
    from transformers import BertTokenizer

    examples = dev_features.examples
    contexts = list(dict.fromkeys(e.context_text for e in examples))  # in dataset order
    chosen = set(contexts[::7])
    subset = [e for e in examples if e.context_text in chosen]
    assert len(chosen) >= 250
    params = FeatureParams()
    features = convert_examples_to_features(subset, make_tokenizer(dev_files.vocab), params, progress=False)
    slow = BertTokenizer(str(dev_files.vocab), do_lower_case=True)
    assert_same_as_reference(features, reference_features(subset, slow, params))


def test_cache_reload_is_identical_and_skips_tokenizing(dev_files, dev_features, feature_cache_dir, monkeypatch):
    monkeypatch.setattr(squad_features, "make_tokenizer", lambda vocab: pytest.fail("rebuilt instead of using the cache"))
    again = load_or_build_features(dev_files.dev_json, dev_files.vocab, FeatureParams(), feature_cache_dir,
                                   progress=False)
    assert again.fingerprint == dev_features.fingerprint
    for name in ("input_ids", "input_mask", "segment_ids", "seq_lengths", "example_index", "doc_span_index"):
        assert np.array_equal(getattr(again, name), getattr(dev_features, name))
    assert again.tokens == dev_features.tokens
    assert again.token_to_orig_map == dev_features.token_to_orig_map
    assert again.token_is_max_context == dev_features.token_is_max_context
    assert [e.qas_id for e in again.examples] == [e.qas_id for e in dev_features.examples]


def test_select_features_takes_a_prefix(dev_features):
    first = select_features(dev_features, 100)
    assert len(first) == 100 and first.tokens == dev_features.tokens[:100]
    assert first.fingerprint == dev_features.fingerprint + ":first100"
    assert select_features(dev_features, 10**6) is dev_features


# ---- crafted contexts ---------------------------------------------------------------------------


def test_long_context_windows(sample_tokenizer, sample_dataset):
    """Several windows: starts advance by doc_stride doc tokens, last one reaches the end, max-context."""
    words = [f"keeper{i}" if i % 3 else "harrowmere" for i in range(60)]  # "keeper12" -> keeper ##1 ##2
    example = make_example(" ".join(words), question="how many vessels?")
    params = FeatureParams(max_seq_length=48, doc_stride=16, max_query_length=8)
    features = convert_examples_to_features([example], sample_tokenizer, params, progress=False)

    doc_pieces, piece_word = [], []
    for w, word in enumerate(words):
        pieces = sample_tokenizer.backend_tokenizer.encode(word, add_special_tokens=False).tokens
        doc_pieces += pieces
        piece_word += [w] * len(pieces)
    query = ["how", "many", "vessels", "?"]
    max_doc = params.max_seq_length - len(query) - 3
    assert len(doc_pieces) > 3 * max_doc

    seen_max_context = np.zeros(len(doc_pieces), dtype=int)
    n = len(features)
    assert n >= 4
    for f in range(n):
        tokens = features.tokens[f]
        offset = len(query) + 2
        start = f * params.doc_stride  # the window start advances by exactly doc_stride
        length = len(tokens) - offset - 1
        assert tokens[:offset] == ["[CLS]", *query, "[SEP]"] and tokens[-1] == "[SEP]"
        assert tokens[offset:-1] == doc_pieces[start:start + length]
        if f < n - 1:
            assert length == max_doc
        else:
            assert start + length == len(doc_pieces)  # the last window reaches the end
        seq = int(features.seq_lengths[f])
        assert seq == len(tokens)
        assert features.segment_ids[f].tolist() == [0] * offset + [1] * (length + 1) + [0] * (48 - seq)
        assert features.input_mask[f].tolist() == [1] * seq + [0] * (48 - seq)
        assert (features.input_ids[f, seq:] == 0).all()
        assert features.token_to_orig_map[f] == {offset + i: piece_word[start + i] for i in range(length)}
        for position, is_max in features.token_is_max_context[f].items():
            seen_max_context[start + position - offset] += is_max
    assert (seen_max_context == 1).all()  # each doc token is max-context in exactly one window
    # and the spans/max-context agree with the reference implementation
    from transformers import BertTokenizer

    slow = BertTokenizer(str(sample_dataset.vocab), do_lower_case=True)
    assert_same_as_reference(features, reference_features([example], slow, params))


def test_max_context_prefers_centered_window():
    spans = squad_features.doc_spans(20, 10, 4)
    assert spans == [(0, 10), (4, 10), (8, 10), (12, 8)]
    mask = squad_features.max_context_mask(spans, 20)
    # token 5: left/right context 5/4 in span 0 -> 4.1, 1/8 in span 1 -> 1.1: span 0 wins
    assert mask[:, 5].tolist() == [True, False, False, False]
    # token 9 is at the centre of span 1 (4 left, 4 right) -> span 1
    assert mask[:, 9].tolist() == [False, True, False, False]
    assert (mask.sum(axis=0) == 1).all()


def test_query_truncated_to_max_query_length(sample_tokenizer):
    question = " ".join(["keeper"] * 100)
    features = convert_examples_to_features([make_example("the light flashes twice.", question)], sample_tokenizer,
                                            FeatureParams(), progress=False)
    tokens = features.tokens[0]
    assert tokens[1:65] == ["keeper"] * 64 and tokens[65] == "[SEP]"
    assert tokens[66:] == ["the", "light", "flashes", "twice", ".", "[SEP]"]


def test_whitespace_rules_and_u202f():
    context = "a\tb\nc\u202fd\u00a0e  f\r\ng "
    doc_tokens, offsets = split_context(context)
    # U+202F splits like a space; U+00A0 does not (the reference's whitespace set)
    assert doc_tokens == ["a", "b", "c", "d\u00a0e", "f", "g"]
    assert offsets == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 5, 5]
    assert len(offsets) == len(context)


def test_accents_punctuation_and_nbsp(sample_tokenizer, sample_dataset):
    from transformers import BertTokenizer

    context = "Zoë's café, (Okonkwo-Lind). Renée\u00a0Marchetti\u202fbaked 1990s buns!"
    example = make_example(context)
    assert example.doc_tokens == ["Zoë's", "café,", "(Okonkwo-Lind).", "Renée\u00a0Marchetti", "baked", "1990s",
                                  "buns!"]
    params = FeatureParams()
    features = convert_examples_to_features([example], sample_tokenizer, params, progress=False)
    offset = features.tokens[0].index("[SEP]") + 1
    doc = features.tokens[0][offset:-1]
    assert doc == ["zoe", "'", "s", "cafe", ",", "(", "okonkwo", "-", "lind", ")", ".", "renee", "marchetti",
                   "baked", "1990s", "buns", "!"]
    words = [features.token_to_orig_map[0][offset + i] for i in range(len(doc))]
    assert words == [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 4, 5, 6, 6]
    slow = BertTokenizer(str(sample_dataset.vocab), do_lower_case=True)
    assert_same_as_reference(features, reference_features([example], slow, params))


def test_empty_context_gives_no_windows(sample_tokenizer):
    features = convert_examples_to_features([make_example("   "), make_example("the light")], sample_tokenizer,
                                            FeatureParams(), progress=False)
    assert len(features) == 1 and features.example_index.tolist() == [1]


def test_bad_params_are_config_errors():
    with pytest.raises(ConfigError):
        FeatureParams(max_seq_length=60, max_query_length=64)
    with pytest.raises(ConfigError):
        FeatureParams(doc_stride=0)


# ---- reading SQuAD ------------------------------------------------------------------------------


def test_examples_from_sample(sample_dataset):
    examples = load_squad_examples(sample_dataset.dev_json)
    assert len(examples) == 29
    first = examples[0]
    assert first.question_text == "Who built Harrowmere Lighthouse?"
    assert first.answers[0] == {"text": "Tobias Wrenfield", "answer_start": first.context_text.index("Tobias")}
    assert first.doc_tokens[first.start_position:first.end_position + 1] == ["Tobias", "Wrenfield,"]
    # questions of one paragraph share its word list
    assert examples[1].doc_tokens is first.doc_tokens


def write(tmp_path: Path, document) -> Path:
    path = tmp_path / "dev.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def good_document() -> dict:
    return {"data": [{"title": "t", "paragraphs": [{"context": "Some text here.", "qas": [
        {"id": "q1", "question": "What?", "answers": [{"text": "text", "answer_start": 5}]},
        {"id": "q2", "question": "Which?", "answers": []},
    ]}]}]}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("data"), r"top level has no 'data'"),
    (lambda d: d.__setitem__("data", {}), r"data: expected a list of articles, got dict"),
    (lambda d: d["data"][0].pop("paragraphs"), r"data\[0\] has no 'paragraphs'"),
    (lambda d: d["data"][0]["paragraphs"][0].__setitem__("context", 3),
     r"data\[0\].paragraphs\[0\].context: expected a context string, got int"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][1].pop("id"), r"data\[0\].paragraphs\[0\].qas\[1\] has no 'id'"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].pop("question"),
     r"data\[0\].paragraphs\[0\].qas\[0\] has no 'question'"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][1].__setitem__("id", "q1"), r"qas\[1\].id 'q1' is a duplicate"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].__setitem__("answer_start", 40),
     r"answers\[0\].answer_start 40 .* outside the context"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].__setitem__("answer_start", "5"),
     r"answers\[0\].answer_start: expected an integer character offset, got str"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][1].update(is_impossible=True, plausible_answers=[]),
     r"qas\[1\] has 'is_impossible': this is a SQuAD v2.0 file; MLPerf bert uses SQuAD v1.1"),
])
def test_schema_errors_name_the_json_path(tmp_path, mutate, message):
    document = good_document()
    mutate(document)
    path = write(tmp_path, document)
    with pytest.raises(DatasetError, match=message) as info:
        load_squad_examples(path)
    assert str(path) in str(info.value)


def test_good_document_loads(tmp_path):
    examples = load_squad_examples(write(tmp_path, good_document()))
    assert [e.qas_id for e in examples] == ["q1", "q2"]
    assert (examples[0].start_position, examples[0].end_position) == (1, 1)
    assert examples[1].start_position is None and examples[1].answers == []


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_squad_examples(tmp_path / "absent.json")
    with pytest.raises(DatasetError, match=r"not valid JSON: .* at line 2 column"):
        load_squad_examples(write(tmp_path, '{"data": [\n,]}'))
    with pytest.raises(DatasetError, match=r"top level: expected an object"):
        load_squad_examples(write(tmp_path, "[1, 2]"))


def test_bad_vocab_is_a_dataset_error(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("hello\nworld\n")
    with pytest.raises(DatasetError, match=r"vocab.txt: not a BERT WordPiece vocabulary"):
        make_tokenizer(vocab)
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\nhello\n")
    with pytest.raises(DatasetError, match=r"vocab.txt: line 7 repeats the token 'hello' of line 5"):
        make_tokenizer(vocab)


# ---- the cache ----------------------------------------------------------------------------------


def test_cache_key_covers_params_and_rebuilds_corrupt_entries(sample_dataset, tmp_path, caplog):
    dev, vocab = sample_dataset.dev_json, sample_dataset.vocab
    built = load_or_build_features(dev, vocab, FeatureParams(), tmp_path, progress=False)
    entry = tmp_path / built.fingerprint
    assert entry.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == [built.fingerprint]

    other = load_or_build_features(dev, vocab, FeatureParams(doc_stride=64), tmp_path, progress=False)
    assert other.fingerprint != built.fingerprint and len(other) > len(built)

    (entry / "features.npz").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        rebuilt = load_or_build_features(dev, vocab, FeatureParams(), tmp_path, progress=False)
    assert "unusable" in caplog.text and "rebuilding" in caplog.text
    assert rebuilt.tokens == built.tokens and np.array_equal(rebuilt.input_ids, built.input_ids)
    assert np.load(entry / "features.npz")["input_ids"].shape == (len(built), 384)


def test_killed_write_leaves_no_entry(sample_dataset, tmp_path, monkeypatch, caplog):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(squad_features.np, "savez", crash)
    with caplog.at_level(logging.WARNING):
        features = load_or_build_features(sample_dataset.dev_json, sample_dataset.vocab, FeatureParams(), tmp_path,
                                          progress=False)
    assert len(features) > 0 and "could not write the feature cache" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_abandoned_temp_dirs_are_removed(sample_dataset, tmp_path):
    dead = tmp_path / f".tmp-0123456789abcdef-{2**22 + 12345}-beef"  # above pid_max: no such process
    dead.mkdir()
    live = tmp_path / f".tmp-0123456789abcdef-{os.getpid()}-beef"
    live.mkdir()
    load_or_build_features(sample_dataset.dev_json, sample_dataset.vocab, FeatureParams(), tmp_path, progress=False)
    assert not dead.exists() and live.exists()


def test_changed_dataset_changes_key(sample_dataset, tmp_path):
    dev = tmp_path / "dev.json"
    dev.write_bytes(sample_dataset.dev_json.read_bytes())
    first = load_or_build_features(dev, sample_dataset.vocab, FeatureParams(), tmp_path / "c", progress=False)
    document = json.loads(dev.read_text(encoding="utf-8"))
    document["data"] = document["data"][:1]
    dev.write_text(json.dumps(document))
    second = load_or_build_features(dev, sample_dataset.vocab, FeatureParams(), tmp_path / "c", progress=False)
    assert second.fingerprint != first.fingerprint and len(second) < len(first)
