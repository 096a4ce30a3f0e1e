"""Which data directory ./run_tests.sh hands the tests: $OBERT_DATA_DIR, else ../shared/data beside the checkout,
else the default data directory ./run_offline.sh downloads into (<cache dir>/data), each only when it holds
dev-v1.1.json and the vocab. Run on a copy of the script in a temp checkout (the real venv, a stub test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import os, pathlib
def test_probe():
    pathlib.Path(os.environ["PROBE_OUT"]).write_text(os.environ.get("OBERT_DATA_DIR", "<unset>"))
"""


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "parent" / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("run_tests.sh", "scripts/bootstrap.sh", "setup.py", "constraints.txt"):
        shutil.copy2(REPO / name, repo / name)
    (repo / "test_probe.py").write_text(PROBE)
    return repo


def _data(directory: Path, vocab: str | None = "vocab.txt") -> Path:
    directory.mkdir(parents=True)
    (directory / "dev-v1.1.json").write_text("{}")
    if vocab:
        (directory / vocab).write_text("[PAD]\n")
    return directory


def _chosen(repo: Path, **env: str) -> str:
    out = repo.parent / "probe.txt"
    environ = {k: v for k, v in os.environ.items() if k not in ("OBERT_DATA_DIR", "OBERT_CACHE_DIR")}
    environ.update(OBERT_VENV=str(Path(sys.prefix)), PROBE_OUT=str(out), **env)
    proc = subprocess.run([str(repo / "run_tests.sh"), "-q", "-p", "no:cacheprovider", "test_probe.py"], cwd=repo,
                          env=environ, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_text()


def test_the_default_data_dir_is_used_when_nothing_else_is_there(checkout: Path) -> None:
    if not (Path(sys.prefix) / ".obert-installed").is_file():
        pytest.skip("the venv was not made by scripts/bootstrap.sh")
    assert _chosen(checkout) == "<unset>"  # nothing anywhere: the data tests skip
    _data(checkout / "cache" / "data", vocab=None)
    assert _chosen(checkout) == "<unset>"  # a dev file without a vocab is not a data directory
    (checkout / "cache" / "data" / "bert-uncased-vocab.txt").write_text("[PAD]\n")
    assert _chosen(checkout) == str(checkout / "cache" / "data")
    other_cache = checkout.parent / "elsewhere"
    _data(other_cache / "data")
    assert _chosen(checkout, OBERT_CACHE_DIR=str(other_cache)) == str(other_cache / "data")  # as the harness reads it
    shared = _data(checkout.parent / "shared" / "data")
    assert _chosen(checkout) == str(shared)  # beside the checkout first, as before
    assert _chosen(checkout, OBERT_DATA_DIR="/given") == "/given"  # the variable always wins
