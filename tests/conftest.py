"""Shared fixtures: the real SQuAD data dir (tests skip without it), its features, the built-in sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from squad.data import DEFAULT_DATA_ENV, DatasetFiles, write_sample_dataset

# Beside the checkout: <parent of repo>/shared/data
DEFAULT_TEST_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Directory holding the official dev-v1.1.json and bert-uncased vocab ($OBERT_DATA_DIR or ../shared/data)."""
    path = Path(os.environ.get(DEFAULT_DATA_ENV) or DEFAULT_TEST_DATA_DIR)
    if not (path / "dev-v1.1.json").is_file():
        pytest.skip(f"real SQuAD data not found in {path} (set ${DEFAULT_DATA_ENV})")
    return path


@pytest.fixture(scope="session")
def dev_files(data_dir: Path, tmp_path_factory) -> DatasetFiles:
    from squad.data import find_dataset

    return find_dataset(data_dir, sample_dir=tmp_path_factory.mktemp("unused-sample"), allow_sample=False)


@pytest.fixture(scope="session")
def feature_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="session")
def dev_features(dev_files: DatasetFiles, feature_cache_dir: Path):
    """The full dev set's features (default MLPerf parameters), built once per test session."""
    from squad.features import FeatureParams, load_or_build_features

    return load_or_build_features(dev_files.dev_json, dev_files.vocab, FeatureParams(), feature_cache_dir,
                                  progress=False)


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> DatasetFiles:
    """The built-in sample dataset and vocab, written to a temp dir."""
    return write_sample_dataset(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def sample_features(tmp_path_factory):
    """(dataset, features, feature cache dir) of the built-in sample with the default MLPerf parameters."""
    from squad.features import FeatureParams, load_or_build_features

    root = tmp_path_factory.mktemp("sample-features")
    dataset = write_sample_dataset(root / "data")
    cache = root / "cache"
    return dataset, load_or_build_features(dataset.dev_json, dataset.vocab, FeatureParams(), cache, progress=False), cache


@pytest.fixture()
def small_tmpfs(tmp_path):
    """``mount(size_kib)`` -> a fresh tmpfs of that size (a device that fills up for real); needs root, as CI
    runs. Unmounted at the end."""
    import subprocess

    mounted: list[Path] = []

    def mount(size_kib: int) -> Path:
        where = tmp_path / f"tmpfs-{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or proc.returncode}); the full-device "
                        "tests need root")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "--lazy", str(where)], capture_output=True)
