"""Run directories: one new directory per run, never reused, marked incomplete until the run finishes.

Writing into a run: every file goes through :func:`write_atomic` (a killed process never leaves half a file,
a failed write leaves no temporary file) and a failed write names the file it was meant for, so that one
handler turns "no space left on device" into a one-line :class:`~harness.errors.DiskFull` naming that file
(:func:`disk_full_error`). A run also holds a small reserve file from its start and releases it just before
its record is written for the last time (:func:`release_reserve`): a run whose device filled up can still
record that it failed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from harness.errors import ConfigError, DiskFull
from harness.sysinfo import REPO_ROOT

DEFAULT_RUNS_DIR = REPO_ROOT / "runs"  # parent of the run directories

INCOMPLETE_MARKER = "INCOMPLETE"
RUN_JSON = "run.json"
RESERVE_FILE = ".space-reserve"
# Room for the last run.json (a fault's traceback included) and the INCOMPLETE marker once the device is full
RESERVE_BYTES = 256 * 1024
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def check_runs_root(runs_root: Path, setting: str = "--runs-dir") -> None:
    """Refuse a runs directory that cannot hold run directories: a regular file (or one on its path), a
    dangling link, a directory this process cannot write to. Cheap, so commands call it before any model
    loads (run directories are made only after the engines are built, minutes later)."""
    runs_root = Path(runs_root)
    nearest = runs_root
    while not nearest.exists():  # exists() is False below a regular file too (ENOTDIR)
        if nearest.is_symlink():
            raise ConfigError(f"{setting} {runs_root}: {nearest} is a link to a missing {os.readlink(nearest)}")
        if nearest.parent == nearest:
            break
        nearest = nearest.parent
    if not nearest.is_dir():
        where = "is a file" if nearest == runs_root else f"is inside {nearest}, which is a file"
        raise ConfigError(f"{setting} {runs_root}: {where}, not a directory")
    if not os.access(nearest, os.W_OK | os.X_OK):
        where = "" if nearest == runs_root else f" ({nearest}, where it would be made)"
        raise ConfigError(f"{setting} {runs_root}: not writable by this user{where}")


def create_run_dir(runs_root: Path, *parts: str, setting: str = "--runs-dir", reserve: bool = False) -> Path:
    """Make ``runs_root/<YYYYmmdd-HHMMSS>_<parts...>`` (suffixing ``-2``, ``-3``... if taken) and mark it
    incomplete; two runs never share a directory (see :func:`claim_dir`). ``reserve``: give it its space reserve
    (a LoadGen run; released by :func:`release_reserve`). A device too full for that is a :class:`DiskFull` and
    leaves no directory behind (nothing ran yet)."""
    check_runs_root(runs_root, setting)
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
        run_dir = claim_dir(runs_root, "_".join([time.strftime("%Y%m%d-%H%M%S"), *parts]))
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise disk_full_error(exc, runs_root) from None
        raise
    try:
        mark_incomplete(run_dir, "the run started but has not finished")
        if reserve:
            _write_reserve(run_dir)
    except OSError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        if exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(f"{runs_root}: {os.strerror(exc.errno).lower()}: {_free(runs_root)} free, too little to "
                           "start a run (LoadGen's logs alone need more)") from None
        raise
    return run_dir


def claim_dir(parent: Path, stem: str) -> Path:
    """A new directory ``parent/stem`` (or ``stem-2``, ``stem-3``... if taken). ``mkdir(exist_ok=False)``
    makes the claim atomic: two processes started in the same second never write into one directory."""
    for attempt in range(1, 1000):
        candidate = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"{parent}: could not find a free directory name for {stem}")


def mark_incomplete(run_dir: Path, reason: str) -> None:
    write_atomic(run_dir / INCOMPLETE_MARKER,
                 f"This run did not complete: {reason}.\nIts logs are partial; do not use its results.\n")


def mark_complete(run_dir: Path) -> None:
    (run_dir / INCOMPLETE_MARKER).unlink(missing_ok=True)


def is_complete(run_dir: Path) -> bool:
    return (run_dir / RUN_JSON).is_file() and not (run_dir / INCOMPLETE_MARKER).exists()


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write through a temporary file, so a killed process never leaves half a file. On failure the
    temporary file is removed and the OSError names ``path`` (a failed write() names no file at all)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            exc.filename, exc.filename2 = str(path), None
        raise


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file (see :func:`write_atomic`)."""
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised inside names ``path``, for writes that do not go through :func:`write_atomic`."""
    try:
        yield
    except OSError as exc:
        exc.filename, exc.filename2 = str(path), None
        raise


def is_no_space(exc: BaseException) -> bool:
    """The device (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def disk_full_error(exc: OSError, where: Path) -> DiskFull:
    """The one-line error for a write that found the device full: the file it was writing (``where`` when
    the OSError names none) and what is left on that device."""
    path = Path(exc.filename) if exc.filename else Path(where)
    return DiskFull(f"{path}: {os.strerror(exc.errno).lower()} ({_free(path)} free)")


def free_bytes(path: Path) -> int:
    """Bytes this process can still write on the device holding ``path`` (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    stat = os.statvfs(path)
    # root may write into the blocks reserved for it (ext4 keeps 5%), others may not
    return stat.f_frsize * (stat.f_bfree if os.geteuid() == 0 else stat.f_bavail)


def _free(path: Path) -> str:
    try:
        free = free_bytes(path)
    except OSError:
        return "unknown space"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if free >= size:
            return f"{free / size:.1f} {unit}"
    return f"{free} bytes"


def check_free_space(runs_root: Path, needed: int, what: str, setting: str = "--runs-dir") -> None:
    """Refuse to start what would fill the device: ``needed`` bytes (an estimate of what the runs write)
    plus each run's reserve must be free where ``runs_root`` is (or would be made)."""
    try:
        free = free_bytes(runs_root)
    except OSError:  # cannot tell: the writes themselves will say
        return
    if free < needed + RESERVE_BYTES:
        raise DiskFull(f"{setting} {runs_root}: no space left on device for {what}: {_free(runs_root)} free, about "
                       f"{(needed + RESERVE_BYTES) / 2**20:.1f} MiB needed")


def _write_reserve(run_dir: Path) -> None:
    path = run_dir / RESERVE_FILE
    try:
        with open(path, "wb") as f:
            f.write(bytes(RESERVE_BYTES))  # real zeros: a sparse file would reserve nothing
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def release_reserve(run_dir: Path) -> None:
    """Free the run's reserve, just before its record is written for the last time."""
    (Path(run_dir) / RESERVE_FILE).unlink(missing_ok=True)
