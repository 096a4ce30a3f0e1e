"""Dataset location, downloads (offline: unreachable and file:// URLs) and the built-in sample."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from squad import data
from squad.data import (
    BERT_VOCAB_SHA256,
    DEFAULT_DATA_ENV,
    OFFLINE_ENV,
    SQUAD_DEV_MD5,
    download_squad_dev,
    download_vocab,
    find_dataset,
    locate_dataset,
    resolve_data_dir,
    write_sample_dataset,
)
from harness.errors import DatasetError, HarnessError

UNREACHABLE = "http://127.0.0.1:9/dev-v1.1.json"  # discard port: nothing listens, connection refused


# ---- resolve_data_dir ---------------------------------------------------------------------------


def test_flag_wins_over_env(tmp_path, monkeypatch):
    flag_dir, env_dir = tmp_path / "flag", tmp_path / "env"
    flag_dir.mkdir()
    env_dir.mkdir()
    monkeypatch.setenv(DEFAULT_DATA_ENV, str(env_dir))
    assert resolve_data_dir(str(flag_dir)) == flag_dir
    assert resolve_data_dir(None) == env_dir


def test_nothing_set_gives_none(monkeypatch):
    monkeypatch.delenv(DEFAULT_DATA_ENV, raising=False)
    assert resolve_data_dir(None) is None


def test_missing_flag_dir_names_flag_and_path(tmp_path):
    with pytest.raises(DatasetError, match=r"--data-dir: .*nope does not exist"):
        resolve_data_dir(str(tmp_path / "nope"))


def test_bad_env_dir_names_env_var(tmp_path, monkeypatch):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    monkeypatch.setenv(DEFAULT_DATA_ENV, str(a_file))
    with pytest.raises(DatasetError, match=rf"\${DEFAULT_DATA_ENV}: .*file.txt is not a directory"):
        resolve_data_dir(None)


# ---- find_dataset -------------------------------------------------------------------------------


def test_real_data_dir_is_official(data_dir, tmp_path):
    files = find_dataset(data_dir, sample_dir=tmp_path / "sample")
    assert files.official is True
    assert files.dev_json == data_dir / "dev-v1.1.json"
    assert files.vocab.name in ("vocab.txt", "bert-uncased-vocab.txt")
    assert str(data_dir) in files.source
    assert not (tmp_path / "sample").exists()


def test_real_vocab_digest_is_the_known_one(dev_files):
    assert hashlib.sha256(dev_files.vocab.read_bytes()).hexdigest() == BERT_VOCAB_SHA256


@pytest.mark.parametrize("present, missing", [
    ("dev-v1.1.json", "no vocab.txt or bert-uncased-vocab.txt"),
    ("bert-uncased-vocab.txt", "no dev-v1.1.json"),
    (None, "no dev-v1.1.json and no vocab.txt or bert-uncased-vocab.txt"),
])
def test_a_named_data_dir_must_hold_both_files(tmp_path, present, missing):
    """A directory the user names is meant: anything missing there is an error naming it, never the sample."""
    if present:
        (tmp_path / present).write_text("{}")
    with pytest.raises(DatasetError, match=rf"--data-dir {tmp_path} holds {missing}"):
        find_dataset(tmp_path, sample_dir=tmp_path / "sample", setting="--data-dir")
    assert not (tmp_path / "sample").exists()


def _copy_data(source_dev, source_vocab, target):
    target.mkdir(parents=True, exist_ok=True)
    (target / "dev-v1.1.json").write_bytes(source_dev.read_bytes())
    (target / "vocab.txt").write_bytes(source_vocab.read_bytes())
    return target


def test_other_dataset_is_unofficial_not_sample(tmp_path, sample_dataset, caplog):
    _copy_data(sample_dataset.dev_json, sample_dataset.vocab, tmp_path)
    with caplog.at_level(logging.WARNING):
        files = find_dataset(tmp_path, sample_dir=tmp_path / "sample")
    assert files.official is False and files.kind == "unofficial" and files.vocab == tmp_path / "vocab.txt"
    assert "not the official SQuAD v1.1 dev set" in caplog.text and "unofficial" in files.source


@pytest.mark.parametrize("damage", ["cut", "shifted"])
def test_official_needs_the_exact_vocab(tmp_path, dev_files, damage):
    """The real dev set with a cut or shifted vocab is not official (the ids it gives are not the model's)."""
    lines = dev_files.vocab.read_text(encoding="utf-8").splitlines(keepends=True)
    lines = lines[:20000] if damage == "cut" else lines[:1] + [f"[extra{i}]\n" for i in range(11)] + lines[1:]
    _copy_data(dev_files.dev_json, dev_files.vocab, tmp_path)
    (tmp_path / "vocab.txt").write_text("".join(lines), encoding="utf-8")
    files = find_dataset(tmp_path, sample_dir=tmp_path / "sample")
    assert files.kind == "unofficial" and "not the bert-base-uncased vocab" in files.source


def test_sample_only_without_any_data_dir(tmp_path, caplog, capsys, monkeypatch):
    monkeypatch.delenv(DEFAULT_DATA_ENV, raising=False)
    monkeypatch.setenv(OFFLINE_ENV, "1")
    files = locate_dataset(None, default_dir=tmp_path / "data", sample_dir=tmp_path / "sample")
    assert files.kind == "sample" and "NOT comparable" in files.source
    assert files.dev_json.is_file() and files.vocab.is_file()
    err = capsys.readouterr().err
    assert "NOT COMPARABLE TO MLPERF" in err and "OBERT_OFFLINE is set" in err
    assert not (tmp_path / "data").exists()


def test_first_run_provisions_the_default_data_dir(tmp_path, dev_files, capsys, monkeypatch):
    """With network access (here file:// URLs), the first run downloads and checks both files into the
    default data dir and uses them from then on; a failed download falls back to the sample and says why."""
    monkeypatch.delenv(DEFAULT_DATA_ENV, raising=False)
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    default = tmp_path / "data"
    monkeypatch.setattr(data, "SQUAD_DEV_URL", UNREACHABLE)
    monkeypatch.setattr(data, "BERT_VOCAB_URL", dev_files.vocab.as_uri())
    files = locate_dataset(None, default_dir=default, sample_dir=tmp_path / "sample", progress=False)
    assert files.kind == "sample" and "could not download dev-v1.1.json" in capsys.readouterr().err

    monkeypatch.setattr(data, "SQUAD_DEV_URL", dev_files.dev_json.as_uri())
    files = locate_dataset(None, default_dir=default, sample_dir=tmp_path / "sample", progress=False)
    assert files.official and files.dev_json == default / "dev-v1.1.json" and files.vocab == default / "vocab.txt"
    assert "default data dir" in files.source
    monkeypatch.setattr(data, "SQUAD_DEV_URL", UNREACHABLE)  # from now on nothing is downloaded
    assert locate_dataset(None, default_dir=default, sample_dir=tmp_path / "sample").official


def test_a_named_data_dir_is_never_replaced_by_downloads(tmp_path, monkeypatch):
    monkeypatch.delenv(DEFAULT_DATA_ENV, raising=False)
    (tmp_path / "mine").mkdir()
    with pytest.raises(DatasetError, match="--data-dir .*mine holds no dev-v1.1.json"):
        locate_dataset(str(tmp_path / "mine"), default_dir=tmp_path / "data", sample_dir=tmp_path / "sample")
    monkeypatch.setenv(DEFAULT_DATA_ENV, str(tmp_path / "mine"))
    with pytest.raises(DatasetError, match=rf"\${DEFAULT_DATA_ENV} .*mine holds no dev-v1.1.json"):
        locate_dataset(None, default_dir=tmp_path / "data", sample_dir=tmp_path / "sample")
    assert not (tmp_path / "data").exists() and not (tmp_path / "sample").exists()


def test_no_sample_when_not_allowed(tmp_path):
    with pytest.raises(DatasetError, match="no data dir given"):
        find_dataset(None, sample_dir=tmp_path / "sample", allow_sample=False)
    assert not (tmp_path / "sample").exists()


# ---- downloads ----------------------------------------------------------------------------------


def test_download_failure_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"could not download dev-v1.1.json from http://127.0.0.1:9/.*offline\?"):
        download_squad_dev(tmp_path, url=UNREACHABLE, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_download_md5_mismatch(tmp_path):
    served = tmp_path / "served.json"
    served.write_text('{"data": []}')
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError, match=rf"has md5 [0-9a-f]{{32}}, expected {SQUAD_DEV_MD5}"):
        download_squad_dev(dest, url=served.as_uri(), progress=False)
    assert list(dest.iterdir()) == []


def test_download_success_via_file_url(tmp_path):
    served = tmp_path / "served.json"
    served.write_text('{"data": []}')
    md5 = hashlib.md5(served.read_bytes()).hexdigest()
    path = download_squad_dev(tmp_path / "dest", url=served.as_uri(), expected_md5=md5, progress=False)
    assert path == tmp_path / "dest" / "dev-v1.1.json"
    assert path.read_bytes() == served.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["dev-v1.1.json"]
    # already there and intact: no second download (the URL is now unreachable)
    assert download_squad_dev(tmp_path / "dest", url=UNREACHABLE, expected_md5=md5, progress=False) == path


def test_download_vocab_checks_shape_and_digest(tmp_path, dev_files):
    bad = tmp_path / "bad.txt"
    bad.write_text("[PAD]\nhello\n")
    with pytest.raises(DatasetError, match="has 2 lines, expected 30522"):
        download_vocab(tmp_path / "dest", url=bad.as_uri(), progress=False)
    assert list((tmp_path / "dest").iterdir()) == []

    lookalike = tmp_path / "lookalike.txt"  # the right shape, other tokens
    lookalike.write_text("[PAD]\n" + "".join(f"tok{i}\n" for i in range(30521)))
    with pytest.raises(DatasetError, match=f"has sha256 [0-9a-f]{{64}}, expected {BERT_VOCAB_SHA256}"):
        download_vocab(tmp_path / "dest", url=lookalike.as_uri(), progress=False)
    assert list((tmp_path / "dest").iterdir()) == []

    path = download_vocab(tmp_path / "dest", url=dev_files.vocab.as_uri(), progress=False)
    assert path.name == "vocab.txt" and path.read_bytes() == dev_files.vocab.read_bytes()


def test_download_vocab_failure(tmp_path):
    with pytest.raises(DatasetError, match="could not download vocab.txt"):
        download_vocab(tmp_path, url=UNREACHABLE, progress=False, timeout=5)


def test_errors_are_harness_errors():
    assert issubclass(DatasetError, HarnessError)


# ---- the built-in sample ------------------------------------------------------------------------


def test_sample_is_deterministic(tmp_path):
    first = write_sample_dataset(tmp_path / "a")
    second = write_sample_dataset(tmp_path / "b")
    assert first.dev_json.read_bytes() == second.dev_json.read_bytes()
    assert first.vocab.read_bytes() == second.vocab.read_bytes()
    # rewriting an intact sample leaves the files alone
    before = first.dev_json.stat().st_mtime_ns
    write_sample_dataset(tmp_path / "a")
    assert first.dev_json.stat().st_mtime_ns == before


def test_sample_is_squad_v1_with_matching_answers(sample_dataset):
    document = json.loads(sample_dataset.dev_json.read_text(encoding="utf-8"))
    articles = document["data"]
    paragraphs = [p for a in articles for p in a["paragraphs"]]
    questions = [qa for p in paragraphs for qa in p["qas"]]
    assert len(articles) == 3 and len(paragraphs) == 6 and 24 <= len(questions) <= 32
    assert len({qa["id"] for qa in questions}) == len(questions)
    for paragraph in paragraphs:
        for qa in paragraph["qas"]:
            assert qa["answers"]
            for answer in qa["answers"]:
                start = answer["answer_start"]
                assert paragraph["context"][start:start + len(answer["text"])] == answer["text"]


def test_sample_vocab_layout(sample_dataset):
    vocab = sample_dataset.vocab.read_text(encoding="utf-8").splitlines()
    assert vocab[0] == "[PAD]" and vocab[1] == "[unused0]" and vocab[99] == "[unused98]"
    assert vocab[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))
    assert {"harrowmere", "zoe", "cafe", "##s", "a", "##a"} <= set(vocab)


def test_sample_tokenizes_without_unk_and_has_a_multi_window_paragraph(sample_dataset):
    from transformers import BertTokenizer

    from squad.examples import load_squad_examples
    from squad.features import FeatureParams, convert_examples_to_features, make_tokenizer

    slow = BertTokenizer(str(sample_dataset.vocab), do_lower_case=True)
    examples = load_squad_examples(sample_dataset.dev_json)
    lengths = set()
    for example in examples:
        context_tokens = slow.tokenize(example.context_text)
        lengths.add(len(context_tokens))
        assert "[UNK]" not in context_tokens and "[UNK]" not in slow.tokenize(example.question_text)
    assert max(lengths) > 384

    features = convert_examples_to_features(examples, make_tokenizer(sample_dataset.vocab), FeatureParams(),
                                            progress=False)
    assert all("[UNK]" not in tokens for tokens in features.tokens)
    assert max(features.doc_span_index) >= 1  # the long paragraph needs several windows


def test_sample_text_is_not_squad(sample_dataset, data_dir):
    """The sample's text is original: none of its sentences occurs in the real dev set."""
    real = (data_dir / "dev-v1.1.json").read_text(encoding="utf-8")
    sample = json.loads(sample_dataset.dev_json.read_text(encoding="utf-8"))
    for article in sample["data"]:
        for paragraph in article["paragraphs"]:
            for sentence in paragraph["context"].split(". "):
                assert json.dumps(sentence)[1:-1] not in real


def test_md5_is_cached(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    expected = hashlib.md5(b"abc").hexdigest()
    assert data.file_md5(path) == expected
    monkeypatch.setattr(data.hashlib, "new", lambda name: pytest.fail(f"{name} recomputed"))
    assert data.file_md5(path) == expected
