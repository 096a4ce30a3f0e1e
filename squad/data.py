"""Where the SQuAD v1.1 dev set and the WordPiece vocabulary come from.

Resolution order (:func:`locate_dataset`):

1. ``--data-dir`` or ``$OBERT_DATA_DIR``: a directory the user named must hold both files; anything
   else is an error naming the directory and what is missing.
2. The default data directory (``<cache dir>/data``): used when it holds both files; otherwise, unless
   ``$OBERT_OFFLINE`` is set, the official files are downloaded into it (SQuAD dev md5-checked, the
   bert-base-uncased vocab sha256-checked) and used from then on.
3. Only when that fails (offline): a small built-in sample, announced loudly as NOT comparable.

A run is labelled ``official`` only when the dev file is byte-identical to SQuAD v1.1 dev (md5) and the
vocab byte-identical to the bert-base-uncased vocab (sha256); other files found in a data directory are
``unofficial`` and said to be so; the sample is ``sample``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from squad.errors import DatasetError
from squad.sample_corpus import sample_dataset_json, sample_vocab

log = logging.getLogger(__name__)

DEFAULT_DATA_ENV = "OBERT_DATA_DIR"
OFFLINE_ENV = "OBERT_OFFLINE"  # set (to anything but 0/empty) to never download
DEV_JSON_NAME = "dev-v1.1.json"
VOCAB_NAMES = ("vocab.txt", "bert-uncased-vocab.txt")

SQUAD_DEV_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json"
SQUAD_DEV_MD5 = "3e85deb501d4e538b6bc56f786231552"
BERT_VOCAB_URL = "https://huggingface.co/bert-base-uncased/resolve/main/vocab.txt"
BERT_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
BERT_VOCAB_SIZE = 30522

SAMPLE_DEV_NAME = "sample-dev-v1.1.json"
SAMPLE_VOCAB_NAME = "sample-vocab.txt"
SAMPLE_SOURCE = "built-in sample (NOT comparable)"

# What a run's data is, for labels and notes.
OFFICIAL, UNOFFICIAL, SAMPLE = "official", "unofficial", "sample"
DATA_NOTES = {
    UNOFFICIAL: "dataset is not the official SQuAD v1.1 dev set with the bert-base-uncased vocab: accuracy is NOT "
                "comparable to MLPerf",
    SAMPLE: "dataset is the built-in sample, not SQuAD v1.1 dev: results are NOT comparable",
}
DATA_LABELS = {UNOFFICIAL: "UNOFFICIAL DATA", SAMPLE: "SAMPLE DATA"}

_DOWNLOAD_TIMEOUT_S = 60.0
_AUTO_DOWNLOAD_TIMEOUT_S = 15.0  # the unasked-for first-run download must not stall an offline machine long
_CHUNK = 1 << 16


@dataclass(frozen=True)
class DatasetFiles:
    """The dev set and vocabulary a run uses, and whether its results can be compared to MLPerf."""

    dev_json: Path
    vocab: Path
    kind: str  # OFFICIAL (byte-exact dev-v1.1.json and bert-base-uncased vocab), UNOFFICIAL or SAMPLE
    source: str  # for humans: where the files were found

    @property
    def official(self) -> bool:
        return self.kind == OFFICIAL

    def describe(self) -> dict:
        """For run.json: the files, what they are, and their digests."""
        return {"dev_json": str(self.dev_json), "vocab": str(self.vocab), "official": self.official,
                "kind": self.kind, "source": self.source, "dev_md5": file_md5(self.dev_json),
                "vocab_sha256": file_sha256(self.vocab)}


# ----------------------------------------------------------------------------------------------
# Locating the files


def resolve_data_dir(cli_value: str | None) -> Path | None:
    """The data directory from ``--data-dir`` (wins) or ``$OBERT_DATA_DIR``; None when neither is set."""
    setting = _data_dir_setting(cli_value)
    if setting is None:
        return None
    name, raw = setting
    path = Path(raw).expanduser()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise DatasetError(f"{name}: {path} {what}; expected a directory holding {DEV_JSON_NAME} and vocab.txt")
    return path


def _data_dir_setting(cli_value: str | None) -> tuple[str, str] | None:
    if cli_value:
        return "--data-dir", cli_value
    if os.environ.get(DEFAULT_DATA_ENV):
        return f"${DEFAULT_DATA_ENV}", os.environ[DEFAULT_DATA_ENV]
    return None


_digest_cache: dict[tuple[str, str, int, int], str] = {}


def _file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, remembered per (path, size, mtime) so repeated lookups are free."""
    st = path.stat()
    key = (algorithm, str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _digest_cache:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
        _digest_cache[key] = digest.hexdigest()
    return _digest_cache[key]


def file_md5(path: Path) -> str:
    return _file_digest(path, "md5")


def file_sha256(path: Path) -> str:
    return _file_digest(path, "sha256")


def _files_in(data_dir: Path) -> tuple[Path | None, Path | None]:
    dev = data_dir / DEV_JSON_NAME
    vocab = next((data_dir / name for name in VOCAB_NAMES if (data_dir / name).is_file()), None)
    return (dev if dev.is_file() else None), vocab


def find_dataset(data_dir: Path | None, *, sample_dir: Path, allow_sample: bool = True,
                 setting: str = "data dir") -> DatasetFiles:
    """The dev set and vocab in ``data_dir``, which must hold both (a directory the user named is meant);
    with ``data_dir`` None, the built-in sample if allowed. ``setting`` names the directory's origin in
    messages (``--data-dir``, ``$OBERT_DATA_DIR``)."""
    if data_dir is None:
        if not allow_sample:
            raise DatasetError(
                f"no data dir given: pass --data-dir or set ${DEFAULT_DATA_ENV} to a directory holding "
                f"{DEV_JSON_NAME} and vocab.txt"
            )
        return use_sample(sample_dir, reason="no data dir given")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"{setting} {data_dir} does not exist or is not a directory")
    dev, vocab = _files_in(data_dir)
    if dev is None and vocab is None and _holds_sample(data_dir):  # a sample written earlier, named on purpose
        return use_sample(data_dir, reason=f"{setting} {data_dir} holds the built-in sample")
    if dev is None or vocab is None:
        missing = [name for name, found in ((DEV_JSON_NAME, dev), (" or ".join(VOCAB_NAMES), vocab)) if found is None]
        raise DatasetError(
            f"{setting} {data_dir} holds no {' and no '.join(missing)}: put the SQuAD v1.1 dev set and the "
            f"bert-base-uncased WordPiece vocab there (`python -m harness prepare --download --data-dir {data_dir}` "
            "fetches both)"
        )
    official_dev = file_md5(dev) == SQUAD_DEV_MD5
    official_vocab = file_sha256(vocab) == BERT_VOCAB_SHA256
    if official_dev and official_vocab:
        return DatasetFiles(dev_json=dev, vocab=vocab, kind=OFFICIAL, source=f"{setting} {data_dir}")
    what = []
    if not official_dev:
        what.append(f"{dev} is not the official SQuAD v1.1 dev set (md5 {file_md5(dev)}, expected {SQUAD_DEV_MD5})")
    if not official_vocab:
        what.append(f"{vocab} is not the bert-base-uncased vocab (sha256 {file_sha256(vocab)[:16]}..., expected "
                    f"{BERT_VOCAB_SHA256[:16]}...)")
    log.warning("%s: accuracy is NOT comparable to MLPerf", "; ".join(what))
    return DatasetFiles(dev_json=dev, vocab=vocab, kind=UNOFFICIAL,
                        source=f"{setting} {data_dir} (unofficial: {'; '.join(what)})")


def _holds_sample(data_dir: Path) -> bool:
    return (data_dir / SAMPLE_DEV_NAME).is_file() and (data_dir / SAMPLE_VOCAB_NAME).is_file()


def locate_dataset(cli_value: str | None, *, default_dir: Path, sample_dir: Path, allow_sample: bool = True,
                   download: bool = True, progress: bool = True) -> DatasetFiles:
    """The dataset a command uses (see the module docstring for the order)."""
    setting = _data_dir_setting(cli_value)
    if setting is not None:
        return find_dataset(resolve_data_dir(cli_value), sample_dir=sample_dir, allow_sample=False, setting=setting[0])
    default_dir = Path(default_dir)
    dev, vocab = _files_in(default_dir) if default_dir.is_dir() else (None, None)
    if dev is not None and vocab is not None:
        return find_dataset(default_dir, sample_dir=sample_dir, setting="default data dir")
    reason = f"no data dir given and no {DEV_JSON_NAME} + vocab.txt in the default data dir {default_dir}"
    if download and not offline_requested():
        try:
            fetch_official_data(default_dir, progress=progress, timeout=_AUTO_DOWNLOAD_TIMEOUT_S)
            log.info("downloaded the official SQuAD v1.1 dev set and vocab into %s (used from now on)", default_dir)
            return find_dataset(default_dir, sample_dir=sample_dir, setting="default data dir")
        except DatasetError as exc:
            reason += f"; downloading them failed ({exc})"
    elif download:
        reason += f"; ${OFFLINE_ENV} is set, so nothing was downloaded"
    if not allow_sample:
        raise DatasetError(f"{reason}: pass --data-dir or set ${DEFAULT_DATA_ENV} to a directory holding "
                           f"{DEV_JSON_NAME} and vocab.txt")
    return use_sample(sample_dir, reason=reason)


def offline_requested() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0")


def fetch_official_data(dest_dir: Path, *, progress: bool = True, timeout: float = _DOWNLOAD_TIMEOUT_S) -> None:
    """Download the SQuAD v1.1 dev set and the bert-base-uncased vocab into ``dest_dir`` (checked)."""
    download_squad_dev(dest_dir, url=SQUAD_DEV_URL, progress=progress, timeout=timeout)
    download_vocab(dest_dir, url=BERT_VOCAB_URL, progress=progress, timeout=timeout)


def use_sample(sample_dir: Path, *, reason: str) -> DatasetFiles:
    """The built-in sample, written into ``sample_dir``, announced with a banner saying why."""
    files = write_sample_dataset(Path(sample_dir))
    banner = "\n".join([
        "",
        "#" * 78,
        "#  USING THE BUILT-IN SAMPLE DATASET: RESULTS ARE NOT COMPARABLE TO MLPERF",
        f"#  ({reason};",
        f"#  --data-dir or ${DEFAULT_DATA_ENV} selects the real SQuAD v1.1 dev set)",
        f"#  sample: {files.dev_json}",
        "#" * 78,
        "",
    ])
    log.debug(banner)
    print(banner, file=sys.stderr, flush=True)
    return files


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
    def problem(path: Path) -> str | None:
        return None if file_md5(path) == expected_md5 else f"has md5 {file_md5(path)}, expected {expected_md5}"

    return _download_checked(url, Path(dest_dir) / DEV_JSON_NAME, problem, progress=progress, timeout=timeout)


def download_vocab(
    dest_dir: Path, *, url: str = BERT_VOCAB_URL, expected_sha256: str = BERT_VOCAB_SHA256, progress: bool = True,
    timeout: float = _DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download the bert-base-uncased vocab.txt into ``dest_dir`` (skipped if the right one is there)."""
    return _download_checked(url, Path(dest_dir) / "vocab.txt", lambda path: _vocab_problem(path, expected_sha256),
                             progress=progress, timeout=timeout)


def _download_checked(url: str, dest: Path, problem, *, progress: bool, timeout: float) -> Path:
    """``dest`` from ``url``, unless a file without a ``problem`` (path -> why it is wrong, or None) is there
    already; a download with a problem is discarded, so ``dest`` only ever holds a checked file."""
    if dest.is_file() and problem(dest) is None:
        return dest
    tmp = _download_to_temp(url, dest.parent, dest.name, progress=progress, timeout=timeout)
    try:
        reason = problem(tmp)
        if reason is not None:
            raise DatasetError(f"downloaded {dest.name} from {url} {reason}; the file was discarded")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _vocab_problem(path: Path, expected_sha256: str) -> str | None:
    """Why ``path`` is not the bert-base-uncased vocab, or None if it is (byte-identical)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return f"is unreadable ({exc})"
    if len(lines) != BERT_VOCAB_SIZE:
        return f"has {len(lines)} lines, expected {BERT_VOCAB_SIZE}"
    if lines[0] != "[PAD]":
        return f"starts with {lines[0][:20]!r}, expected '[PAD]'"
    if file_sha256(path) != expected_sha256:
        return f"has sha256 {file_sha256(path)}, expected {expected_sha256}"
    return None


# ----------------------------------------------------------------------------------------------
# The built-in sample (its text: squad/sample_corpus.py)


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
        dev_json=sample_dir / SAMPLE_DEV_NAME, vocab=sample_dir / SAMPLE_VOCAB_NAME, kind=SAMPLE,
        source=SAMPLE_SOURCE,
    )
