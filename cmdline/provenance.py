"""Where a generated report's figures come from: the command, when (UTC), the commit, and the CPU with its ISA.

Here, below every package, so that the harness, the compression steps and the experiments stamp their reports
the same way (speed figures depend on the ISA: AVX2-only, AVX-512 VNNI and AMX machines differ by 2x and more).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The instruction-set extensions the engines' speed depends on.
ISA_FLAGS = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16", "amx_tile",
                       "fma"})


def cpuinfo_field(name: str) -> str | None:
    """The first ``name`` line of /proc/cpuinfo (Linux; None elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_isa() -> list[str]:
    """The ISA extensions of :data:`ISA_FLAGS` this CPU has, sorted."""
    return sorted(set((cpuinfo_field("flags") or "").split()) & ISA_FLAGS)


@lru_cache(maxsize=1)
def checkout_commit() -> str | None:
    """The git commit of this checkout, with ``-dirty`` when it has uncommitted changes (None outside git)."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if commit and dirty else (commit or None)


def command_line() -> str:
    """This process's command as a person would type it (``python -m <package> ...`` for a package's main)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        return shlex.join(["python", "-m", Path(argv[0]).parent.name, *argv[1:]])
    return shlex.join([Path(sys.executable).name, *argv])


def provenance(command: str | None = None) -> dict:
    """The record a report carries at its top (``command`` defaults to this process's)."""
    return {"command": command or command_line(),
            "time_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "commit": checkout_commit(), "cpu_model": cpuinfo_field("model name"), "isa": cpu_isa(),
            "logical_cpus": os.cpu_count()}


def provenance_line(record: dict | None) -> str:
    """One Markdown line for the top of a generated report (empty when the record has none)."""
    if not record:
        return ""
    isa = ", ".join(record.get("isa") or []) or "no AVX2"
    return (f"Produced by `{record.get('command')}` at {record.get('time_utc')} UTC, commit "
            f"`{record.get('commit') or 'unknown'}`, on {record.get('cpu_model')} ({record.get('logical_cpus')} logical "
            f"CPUs; ISA: {isa}).")
