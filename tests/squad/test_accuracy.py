"""Accuracy: response encoding, accuracy-log reading, answer post-processing and SQuAD v1.1 scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.accuracy import (
    PAD_LOGIT,
    AccuracyLogError,
    decode_logits,
    encode_logits,
    encode_logits_batch,
    evaluate_accuracy_log,
    read_accuracy_log,
)
from squad.sample_corpus import sample_vocab
from squad.scoring import exact_match_score, f1_score, get_final_text, normalize_answer, predict_answers, squad_v1_scores
from harness.errors import HarnessError
from squad.examples import SquadExample, load_squad_examples, split_context
from squad.features import FeatureParams, FeatureSet, convert_examples_to_features, make_tokenizer, select_features

# ---- SQuAD v1.1 metrics (numbers computed by hand) --------------------------------------------------


def test_f1_by_hand():
    # normalized: "cat sat" vs "cat sat down": overlap 2, precision 2/2, recall 2/3 -> F1 = 0.8
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert exact_match_score("the cat sat", "a cat sat down") == 0.0
    # "cat cat" vs "cat": overlap min(2, 1) = 1, precision 1/2, recall 1/1 -> 2/3
    assert f1_score("cat cat", "cat") == pytest.approx(2 / 3)
    assert f1_score("dog", "cat") == 0.0


def test_normalization():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear & the plum.") == "apple pear plum"
    assert normalize_answer("theater") == "theater"  # articles only as whole words
    assert normalize_answer("Saint-Denis") == "saintdenis"  # punctuation is removed, not split on
    assert exact_match_score("the Denver Broncos.", "Denver broncos") == 1.0
    assert f1_score("", "Denver Broncos") == 0.0
    assert exact_match_score("", "") == 1.0


def test_scores_take_best_gold_and_average_over_all_questions(sample_dataset):
    examples = load_squad_examples(sample_dataset.dev_json)
    total = len(examples)
    first = examples[0]  # golds: "Tobias Wrenfield", "the engineer Tobias Wrenfield"
    assert [a["text"] for a in first.answers] == ["Tobias Wrenfield", "the engineer Tobias Wrenfield"]
    scores = squad_v1_scores(sample_dataset.dev_json, {first.qas_id: "engineer Tobias Wrenfield"})
    # EM against the second gold (articles dropped) = 1; unanswered questions count as 0
    assert scores["exact_match"] == pytest.approx(100.0 / total)
    assert scores["f1"] == pytest.approx(100.0 / total)
    # F1 "Wrenfield" vs "Tobias Wrenfield": p = 1, r = 1/2 -> 2/3 (better than vs the longer gold: 1/2)
    scores = squad_v1_scores(sample_dataset.dev_json, {first.qas_id: "Wrenfield", examples[1].qas_id: "1873"})
    assert scores["exact_match"] == pytest.approx(100.0 / total)
    assert scores["f1"] == pytest.approx(100.0 * (2 / 3 + 1) / total)
    perfect = {e.qas_id: e.answers[0]["text"] for e in examples}
    assert squad_v1_scores(sample_dataset.dev_json, perfect) == {"exact_match": 100.0, "f1": 100.0,
                                                                 "questions": total}


# ---- response encoding ----------------------------------------------------------------------------


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    start, end = rng.normal(size=384).astype(np.float32), rng.normal(size=384).astype(np.float32)
    data = encode_logits(start, end, 384)
    assert len(data) == 384 * 2 * 4
    pairs = np.frombuffer(data, dtype=np.float32).reshape(384, 2)  # the reference's [seq, 2] layout
    assert np.array_equal(pairs[:, 0], start) and np.array_equal(pairs[:, 1], end)
    got_start, got_end = decode_logits(data, 384)
    assert np.array_equal(got_start, start) and np.array_equal(got_end, end)


def test_short_logits_are_padded():
    data = encode_logits(np.array([1.0, 2.0]), np.array([3.0, 4.0]), 5)
    start, end = decode_logits(data, 5)
    assert start.tolist() == [1.0, 2.0, PAD_LOGIT, PAD_LOGIT, PAD_LOGIT]
    assert end.tolist() == [3.0, 4.0, PAD_LOGIT, PAD_LOGIT, PAD_LOGIT]
    # a short response in the log is padded on decoding, as the reference does
    start, _ = decode_logits(np.array([[7.0, 8.0]], dtype=np.float32).tobytes(), 3)
    assert start.tolist() == [7.0, PAD_LOGIT, PAD_LOGIT]


def test_encode_batch_rows_are_responses():
    start = np.arange(6, dtype=np.float32).reshape(2, 3)
    batch = encode_logits_batch(start, -start, 4)
    assert batch.shape == (2, 4, 2) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert batch[1].tobytes() == encode_logits(start[1], -start[1], 4)


def test_bad_responses():
    with pytest.raises(AccuracyLogError, match="not a whole number"):
        decode_logits(b"\x00" * 12, 384)
    with pytest.raises(AccuracyLogError, match="more than max_seq_length"):
        decode_logits(b"\x00" * 8 * 385, 384)
    with pytest.raises(ValueError):
        encode_logits(np.zeros(385), np.zeros(385), 384)


# ---- reading the accuracy log ----------------------------------------------------------------------


def write_log(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps(entries))
    return path


def test_read_accuracy_log_keeps_first_of_identical_duplicates(tmp_path):
    a, b = encode_logits(np.ones(4), np.zeros(4), 4), encode_logits(np.zeros(4), np.ones(4), 4)
    log = write_log(tmp_path / "log.json", [
        {"seq_id": 0, "qsl_idx": 7, "data": a.hex()},
        {"seq_id": 1, "qsl_idx": 2, "data": b.hex().upper()},
        {"seq_id": 2, "qsl_idx": 7, "data": a.hex()},
    ])
    assert read_accuracy_log(log) == {7: a, 2: b}


def test_read_accuracy_log_rejects_conflicting_duplicates(tmp_path):
    log = write_log(tmp_path / "log.json", [
        {"seq_id": 0, "qsl_idx": 3, "data": "00000000"},
        {"seq_id": 1, "qsl_idx": 3, "data": "0000803f"},
    ])
    with pytest.raises(AccuracyLogError, match="qsl_idx 3 appears more than once with different data"):
        read_accuracy_log(log)


def test_read_accuracy_log_errors(tmp_path):
    assert issubclass(AccuracyLogError, HarnessError)
    with pytest.raises(AccuracyLogError, match="accuracy log not found"):
        read_accuracy_log(tmp_path / "absent.json")
    (tmp_path / "cut.json").write_text('[{"seq_id": 0, "qsl_idx": 1, "da')
    with pytest.raises(AccuracyLogError, match=r"cut.json: accuracy log is not valid JSON .*line 1"):
        read_accuracy_log(tmp_path / "cut.json")
    with pytest.raises(AccuracyLogError, match=r"entry \[0\]"):
        read_accuracy_log(write_log(tmp_path / "bad.json", [{"qsl_idx": 1, "data": "xyz"}]))
    with pytest.raises(AccuracyLogError, match=r"entry \[1\]"):
        read_accuracy_log(write_log(tmp_path / "bad2.json", [{"qsl_idx": 1, "data": ""}, {"data": ""}]))


# ---- post-processing on crafted windows -------------------------------------------------------------

SHORT_CONTEXT = "In the 1990s the Denver Broncos, a football team, won twice; fans of the Broncos still sing."
LONG_CONTEXT = " ".join(f"w{i}" for i in range(60))


def make_example(context: str, qas_id: str, question: str = "Who won?") -> SquadExample:
    doc_tokens, offsets = split_context(context)
    return SquadExample(qas_id=qas_id, question_text=question, context_text=context, doc_tokens=doc_tokens,
                        char_to_word_offset=offsets, answers=[], start_position=None, end_position=None)


@pytest.fixture(scope="module")
def crafted_tokenizer(tmp_path_factory):
    """Whole-word vocab for the crafted contexts, except "1990s", which must split into 1990 ##s."""
    fake = {"data": [{"paragraphs": [{"context": SHORT_CONTEXT + " " + LONG_CONTEXT, "qas": [
        {"question": "Who won? 1990", "answers": []}]}]}]}
    vocab = [token for token in sample_vocab(fake) if token != "1990s"]
    path = tmp_path_factory.mktemp("crafted") / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return make_tokenizer(path)


def crafted_features(tokenizer, contexts: list[str], params: FeatureParams = FeatureParams()) -> FeatureSet:
    examples = [make_example(context, f"q{i}") for i, context in enumerate(contexts)]
    return convert_examples_to_features(examples, tokenizer, params, progress=False)


def logits_at(features: FeatureSet, feature: int, starts: dict[int, float], ends: dict[int, float],
              base: float = -10.0) -> tuple[np.ndarray, np.ndarray]:
    seq = features.params.max_seq_length
    start, end = np.full(seq, base, np.float32), np.full(seq, base, np.float32)
    for position, value in starts.items():
        start[position] = value
    for position, value in ends.items():
        end[position] = value
    return start, end


def position(features: FeatureSet, feature: int, token: str, nth: int = 0) -> int:
    return [i for i, t in enumerate(features.tokens[feature]) if t == token][nth]


def test_crafted_window_tokens(crafted_tokenizer):
    features = crafted_features(crafted_tokenizer, [SHORT_CONTEXT])
    assert features.tokens[0][:12] == ["[CLS]", "who", "won", "?", "[SEP]", "in", "the", "1990", "##s", "the",
                                       "denver", "broncos"]


@pytest.mark.parametrize("start_token, end_token, expected", [
    (("denver", 0), ("broncos", 0), "Denver Broncos"),  # original casing, comma after Broncos left out
    (("1990", 0), ("1990", 0), "1990"),  # a span ending inside the word "1990s"
    (("##s", 0), ("denver", 0), "s the Denver"),  # a span starting inside a word
    (("broncos", 0), (",", 0), "Broncos,"),
    (("broncos", 1), (".", 0), "Broncos still sing."),
])
def test_final_text_recovers_original_text(crafted_tokenizer, start_token, end_token, expected):
    features = crafted_features(crafted_tokenizer, [SHORT_CONTEXT])
    start, end = position(features, 0, *start_token), position(features, 0, *end_token)
    predicted = predict_answers(features, {0: logits_at(features, 0, {start: 10.0}, {end: 10.0})})
    assert predicted.answers == {"q0": expected}


def test_get_final_text_direct():
    assert get_final_text("denver broncos", "Denver Broncos,") == "Denver Broncos"
    assert get_final_text("1990", "1990s") == "1990"
    assert get_final_text("cafe", "Café") == "Café"  # accent stripping keeps the length: mapped back
    assert get_final_text("xyz", "Denver") == "Denver"  # not found: the whole original words


def test_picks_best_legal_span(crafted_tokenizer):
    features = crafted_features(crafted_tokenizer, [SHORT_CONTEXT])
    denver, broncos, team = (position(features, 0, t) for t in ("denver", "broncos", "team"))
    # [CLS] and the question are outside the document: never an answer, however high their logits
    logits = logits_at(features, 0, {0: 50.0, 2: 40.0, denver: 5.0}, {0: 50.0, 3: 40.0, broncos: 4.0})
    assert predict_answers(features, {0: logits}).answers["q0"] == "Denver Broncos"
    # end before start is illegal: the best start (broncos) pairs with the next-best end (broncos)
    logits = logits_at(features, 0, {broncos: 10.0}, {denver: 10.0, broncos: 5.0})
    assert predict_answers(features, {0: logits}).answers["q0"] == "Broncos"
    # too long for max_answer_length: "Denver ... team" (6 tokens) loses to "Denver Broncos"
    logits = logits_at(features, 0, {denver: 5.0}, {team: 10.0, broncos: 4.0})
    assert predict_answers(features, {0: logits}, max_answer_length=3).answers["q0"] == "Denver Broncos"
    assert predict_answers(features, {0: logits}).answers["q0"] == "Denver Broncos, a football team"


def test_start_must_be_max_context(crafted_tokenizer):
    params = FeatureParams(max_seq_length=32, doc_stride=8, max_query_length=8)
    features = crafted_features(crafted_tokenizer, [LONG_CONTEXT], params)
    assert len(features) == 6
    # w20 lies in windows 0..2; window 1 (tokens 8..33) centres it best
    in_window = {f: position(features, f, "w20") for f in range(3)}
    assert [features.token_is_max_context[f][p] for f, p in in_window.items()] == [False, True, False]
    low = -100.0  # everything else far below, so only the spans set here can win
    logits = {f: logits_at(features, f, {}, {}, low) for f in range(len(features))}
    logits[0] = logits_at(features, 0, {in_window[0]: 20.0}, {in_window[0] + 1: 20.0}, low)  # not max-context
    logits[1] = logits_at(features, 1, {in_window[1]: 1.0}, {in_window[1] + 1: 1.0}, low)
    assert predict_answers(features, logits).answers == {"q0": "w20 w21"}
    # window 0's span wins when it starts on a token that is max-context there (w5)
    w5 = position(features, 0, "w5")
    logits[0] = logits_at(features, 0, {w5: 20.0}, {w5 + 1: 20.0}, low)
    assert predict_answers(features, logits).answers == {"q0": "w5 w6"}


def test_missing_windows_give_empty_answers(crafted_tokenizer):
    features = crafted_features(crafted_tokenizer, [SHORT_CONTEXT, SHORT_CONTEXT])
    denver = position(features, 1, "denver")
    predicted = predict_answers(features, {1: logits_at(features, 1, {denver: 1.0}, {denver: 1.0})})
    assert predicted.answers == {"q0": "", "q1": "Denver"}
    assert predicted.missing_examples == ["q0"] and predicted.features_with_logits == 1


# ---- end to end on real dev examples -------------------------------------------------------------


def gold_token_logits(features: FeatureSet, tokenizer) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per window: logits pointing at the tokens that exactly cover a gold answer's characters.

    The first gold answer whose both ends fall on WordPiece token boundaries is used (some golds cannot
    be expressed as a token span, e.g. "8" inside "20–18"; that question also has "eight"). Token
    character ranges come from the tokenizer's offsets, independently of the post-processing's text
    alignment. Windows without such a span get all-zero logits.
    """
    backend = tokenizer.backend_tokenizer
    logits = {}
    for f in range(len(features)):
        example = features.examples[int(features.example_index[f])]
        word_start = {}
        for char, word in enumerate(example.char_to_word_offset):
            word_start.setdefault(word, char)
        window = features.token_to_orig_map[f]
        char_span: dict[int, tuple[int, int]] = {}  # window position -> character range in the context
        for word in set(window.values()):
            pieces = backend.encode([example.doc_tokens[word]], is_pretokenized=True, add_special_tokens=False).offsets
            positions = sorted(p for p, w in window.items() if w == word)
            # a window edge may cut a split word: the first window word can be a tail, the last a head
            first_piece = 0 if positions[0] > min(window) else len(pieces) - len(positions)
            for position, (lo, hi) in zip(positions, pieces[first_piece:]):
                char_span[position] = (word_start[word] + lo, word_start[word] + hi)
        result = logits_at(features, f, {}, {}, base=0.0)
        for answer in example.answers:
            lo, hi = answer["answer_start"], answer["answer_start"] + len(answer["text"])
            starts = [p for p, span in char_span.items() if span[0] == lo and features.token_is_max_context[f][p]]
            ends = [p for p, span in char_span.items() if span[1] == hi]
            if starts and ends:
                result = logits_at(features, f, {starts[0]: 10.0}, {ends[-1]: 10.0}, base=0.0)
                break
        logits[f] = result
    return logits


def test_perfect_logits_score_100_on_real_dev_examples(dev_features, dev_files, tmp_path):
    tokenizer = make_tokenizer(dev_files.vocab)
    first = dev_features.examples[:40]
    features = convert_examples_to_features(first, tokenizer, FeatureParams(), progress=False)
    logits = gold_token_logits(features, tokenizer)
    pointed = {int(features.example_index[f]) for f, (start, _) in logits.items() if start.max() > 0}
    assert pointed == set(range(len(first)))  # every one of them has a gold answer expressible as tokens
    chosen = first

    subset_json = tmp_path / "subset.json"
    subset_json.write_text(json.dumps({"data": [{"title": "subset", "paragraphs": [
        {"context": e.context_text, "qas": [{"id": e.qas_id, "question": e.question_text, "answers": e.answers}]}
        for e in chosen]}]}))
    features = convert_examples_to_features(load_squad_examples(subset_json), tokenizer, FeatureParams(),
                                            progress=False)
    entries = [{"seq_id": 100 + f, "qsl_idx": f, "data": encode_logits(*pair, 384).hex()}
               for f, pair in gold_token_logits(features, tokenizer).items()]
    log = write_log(tmp_path / "mlperf_log_accuracy.json", entries + entries[:3])  # plus harmless repeats
    result = evaluate_accuracy_log(log, features, tmp_path / "out")
    assert result["exact_match"] == 100.0 and result["f1"] == 100.0
    assert result["examples_scored"] == len(chosen) and result["features_in_log"] == len(features)
    assert result["missing_examples"] == 0 and result["subset"] is False
    assert (tmp_path / "out" / "accuracy.txt").read_text() == '{"exact_match": 100.0, "f1": 100.0}\n'
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions) == len(chosen)
    assert predictions[first[0].qas_id] == "Denver Broncos"


def test_subset_scores_only_its_questions(dev_features, dev_files, tmp_path):
    """A --count subset is scored over the questions it covers; the full set over all 10,570."""
    tokenizer = make_tokenizer(dev_files.vocab)
    count = int(np.searchsorted(dev_features.example_index, 10))  # the windows of the first 10 questions
    logits = gold_token_logits(select_features(dev_features, count), tokenizer)
    entries = [{"seq_id": f, "qsl_idx": f, "data": encode_logits(*pair, 384).hex()} for f, pair in logits.items()]
    entries.append({"seq_id": count, "qsl_idx": count, "data": ""})  # a failed sample: no logits
    log = write_log(tmp_path / "mlperf_log_accuracy.json", entries)

    subset = evaluate_accuracy_log(log, select_features(dev_features, count + 1), tmp_path / "a")
    predictions = json.loads((tmp_path / "a" / "predictions.json").read_text())
    golds = {e.qas_id: [a["text"] for a in e.answers] for e in dev_features.examples[:11]}
    exact = sum(max(exact_match_score(predictions[q], g) for g in golds[q]) for q in list(golds)[:10])
    assert exact == 10
    assert subset["subset"] is True and subset["examples_scored"] == 11 and subset["missing_examples"] == 1
    assert subset["exact_match"] == pytest.approx(100.0 * 10 / 11)
    assert predictions[dev_features.examples[10].qas_id] == ""

    full = evaluate_accuracy_log(log, dev_features, tmp_path / "b")
    assert full["subset"] is False and full["examples_scored"] == 10570 and full["missing_examples"] == 10560
    # unanswered questions score 0, even the three whose gold "." normalizes to "" like a "" prediction
    assert full["exact_match"] == pytest.approx(100.0 * 10 / 10570)
    assert full["features_in_log"] == count + 1 and full["features_with_logits"] == count
    line = (tmp_path / "b" / "accuracy.txt").read_text()
    assert line.count("\n") == 1 and list(json.loads(line)) == ["exact_match", "f1"]


def test_log_from_other_dataset_is_rejected(dev_features, dev_files, tmp_path):
    log = write_log(tmp_path / "log.json", [{"seq_id": 0, "qsl_idx": 10833, "data": ""}])
    with pytest.raises(AccuracyLogError, match="qsl_idx 10833 is beyond the 10833 features"):
        evaluate_accuracy_log(log, dev_features, tmp_path)
