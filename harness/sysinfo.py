"""What the machine and the software stack are, as far as the machine can tell."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from cmdline.provenance import checkout_commit, cpu_isa, cpuinfo_field

REPO_ROOT = Path(__file__).resolve().parents[1]
_PACKAGES = ("deepsparse", "openvino", "onnxruntime", "mlcommons-loadgen", "torch", "transformers", "sparseml", "onnx", "numpy")


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


@lru_cache(maxsize=1)
def machine_info() -> dict:
    cpu = _lscpu()
    sockets = int(cpu.get("Socket(s)", "1") or 1)
    cores_per_socket = int(cpu.get("Core(s) per socket", "0") or 0)
    try:
        mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {
        "cpu_model": cpu.get("Model name") or cpuinfo_field("model name") or platform.processor(),
        "sockets": sockets,
        "cores_per_socket": cores_per_socket,
        "physical_cores": sockets * cores_per_socket or os.cpu_count(),
        "logical_cpus": os.cpu_count(),
        "threads_per_core": int(cpu.get("Thread(s) per core", "1") or 1),
        "isa": cpu_isa(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "distribution": _os_release(),
        "python": platform.python_version(),
    }


def _os_release() -> str | None:
    try:
        fields = dict(
            line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
        )
        return fields.get("PRETTY_NAME", "").strip('"') or None
    except OSError:
        return None


@lru_cache(maxsize=1)
def software_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def harness_commit() -> str | None:
    """The git commit of this checkout, with ``-dirty`` when it has uncommitted changes."""
    return checkout_commit()


def _proc_status_mb(key: str) -> float | None:
    """A memory figure of this process from /proc/self/status (Linux), in MB; None where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)  # reported in kB
    except (OSError, IndexError, ValueError):
        pass
    return None


def current_rss_mb() -> float | None:
    """Resident memory of this process now (Linux; None elsewhere)."""
    return _proc_status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space so far.

    VmHWM, not getrusage's ru_maxrss: a process started by vfork+exec (Python's subprocess does) inherits
    into ru_maxrss the peak of the parent's address space, so a child of a 1.5 GB parent "peaks" at 1.5 GB
    whatever it does itself."""
    own = _proc_status_mb("VmHWM")
    if own is not None:
        return own
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB
