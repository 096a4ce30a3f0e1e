"""Run directories: one new directory per run, never reused, marked incomplete until the run finishes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

INCOMPLETE_MARKER = "INCOMPLETE"
RUN_JSON = "run.json"


def create_run_dir(runs_root: Path, *parts: str) -> Path:
    """Make ``runs_root/<YYYYmmdd-HHMMSS>_<parts...>`` (suffixing ``-2``, ``-3``... if taken) and mark it
    incomplete. ``mkdir(exist_ok=False)`` makes the claim atomic, so two runs never share a directory."""
    runs_root.mkdir(parents=True, exist_ok=True)
    stem = "_".join([time.strftime("%Y%m%d-%H%M%S"), *parts])
    for attempt in range(1, 1000):
        candidate = runs_root / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        mark_incomplete(candidate, "the run started but has not finished")
        return candidate
    raise RuntimeError(f"{runs_root}: could not find a free run directory name for {stem}")


def mark_incomplete(run_dir: Path, reason: str) -> None:
    (run_dir / INCOMPLETE_MARKER).write_text(
        f"This run did not complete: {reason}.\nIts logs are partial; do not use its results.\n"
    )


def mark_complete(run_dir: Path) -> None:
    (run_dir / INCOMPLETE_MARKER).unlink(missing_ok=True)


def is_complete(run_dir: Path) -> bool:
    return (run_dir / RUN_JSON).is_file() and not (run_dir / INCOMPLETE_MARKER).exists()


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file so a killed process never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
