"""Argument groups shared by the commands that start runs (``run``, ``find-target``, ``python -m benchmarks``,
``python -m submission``): data and cache directories, backend and engine flags, and the default directories they
name. Parsing only: what the values mean is the job of :mod:`harness.run_options`, :mod:`harness.run_inputs` and the
commands."""

from __future__ import annotations

import argparse
import os

from harness.run_options import EngineSettings
from harness.sysinfo import REPO_ROOT

DEFAULT_RUNS_DIR = REPO_ROOT / "runs"
DEFAULT_CACHE_ENV = "OBERT_CACHE_DIR"


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --cache-dir, --no-progress (see :func:`harness.run_inputs.load_dataset_and_features`)."""
    parser.add_argument(
        "--data-dir",
        help="directory holding dev-v1.1.json and vocab.txt/bert-uncased-vocab.txt (default: $OBERT_DATA_DIR, else "
        "<cache dir>/data, where the first run downloads the official files; offline, a small built-in sample is "
        "used and results are NOT comparable)",
    )
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get(DEFAULT_CACHE_ENV, str(REPO_ROOT / "cache")),
        help="where tokenized features, the built-in sample and downloads are kept (default: ./cache or "
        "$OBERT_CACHE_DIR)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_engine_args(parser: argparse.ArgumentParser, note: str = "") -> None:
    """The engine, SUT, engine-library and Ray flags of every command that starts runs (declared on
    :class:`harness.run_options.EngineSettings` and the option classes it holds)."""
    EngineSettings.add_flags(parser, note)
