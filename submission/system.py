"""The system description JSON (``systems/<system>.json``).

Every field the checker requires is written. What the machine can tell (CPU model, sockets, cores,
threads, caches, frequency, memory, storage, OS, framework and engine versions) is detected; the rest
(submitter, availability, cooling, networking, notes...) comes from a small user-editable template,
``submission/system_template.json``. A value in the template always wins over detection; ``null`` (or a
missing key) means "detect it".
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from pathlib import Path

from harness.backends import ENGINE_NAMES
from harness.errors import ConfigError
from submission import rules
from harness.sysinfo import REPO_ROOT, _lscpu, machine_info, software_versions

DEFAULT_TEMPLATE = Path(__file__).parent / "system_template.json"  # package data: found when installed too

# Fields a CPU-only system answers the same way whatever the machine: the checker wants a
# meaningful (non-empty) value for several accelerator fields, so "0"/"N/A" rather than "".
CPU_ONLY_FIELDS = {
    "accelerators_per_node": "0",
    "accelerator_model_name": "N/A",
    "accelerator_memory_capacity": "N/A",
    "accelerator_frequency": "N/A",
    "accelerator_host_interconnect": "N/A",
    "accelerator_interconnect": "N/A",
    "accelerator_interconnect_topology": "N/A",
    "accelerator_memory_configuration": "N/A",
    "accelerator_on-chip_memories": "N/A",
    "number_of_nodes": "1",
}
# Template keys that are not system-description fields
TEMPLATE_ONLY_KEYS = ("system_id", "implementation")


def load_template(path: Path | None) -> dict:
    """The user's template (``_``-prefixed keys are comments); an unknown field is an error, so a typo
    cannot silently leave a required field to detection."""
    path = Path(path) if path else DEFAULT_TEMPLATE
    if not path.is_file():
        raise ConfigError(f"--system-template {path}: file not found (copy {DEFAULT_TEMPLATE} and edit it)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--system-template {path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"--system-template {path}: expected a JSON object of system-description fields")
    template = {k: v for k, v in raw.items() if not k.startswith("_")}
    known = set(rules.SYSTEM_REQUIRED_FIELDS) | set(TEMPLATE_ONLY_KEYS)
    unknown = sorted(set(template) - known)
    if unknown:
        raise ConfigError(
            f"--system-template {path}: unknown field(s) {', '.join(unknown)}; expected MLPerf system-description "
            f"fields ({', '.join(rules.SYSTEM_REQUIRED_FIELDS[:4])}, ...) or {', '.join(TEMPLATE_ONLY_KEYS)}"
        )
    for key, value in template.items():
        if value is not None and not isinstance(value, (str, int, float)):
            raise ConfigError(f"--system-template {path}: field {key!r} must be a string, a number or null")
    return template


def _storage() -> tuple[str | None, str | None]:
    """(capacity, type) of the disk holding the repository, e.g. ("252GB", "SSD (vda)")."""
    try:
        capacity = f"{shutil.disk_usage(REPO_ROOT).total / 1e9:.0f}GB"
    except OSError:
        capacity = None
    kind = None
    try:
        device = os.stat(REPO_ROOT).st_dev
        block = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}").resolve()
        for candidate in (block, block.parent):  # a partition's queue/ lives in its parent disk
            rotational = candidate / "queue" / "rotational"
            if rotational.is_file():
                # the kernel's flag; virtual disks often claim to be rotational: override in the template
                disk = "HDD" if rotational.read_text().strip() == "1" else "SSD"
                kind = f"{disk} ({candidate.name}, kernel-reported)"
                break
    except (OSError, ValueError):
        pass
    return capacity, kind


def _frequency(cpu: dict[str, str]) -> str | None:
    mhz = cpu.get("CPU max MHz") or cpu.get("CPU MHz")
    if not mhz:
        try:
            mhz = next(line.split(":", 1)[1] for line in Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith("cpu MHz"))
        except (OSError, StopIteration):
            return None
    try:
        return f"{float(mhz):.0f} MHz"
    except ValueError:
        return None


def _caches(cpu: dict[str, str]) -> str | None:
    parts = [f"{name}: {cpu[name]}" for name in ("L1d cache", "L1i cache", "L2 cache", "L3 cache") if cpu.get(name)]
    return ", ".join(parts) or None


def detect_system(backend: str) -> dict[str, str]:
    """Every field the machine can answer, as strings (the checker's own examples use strings)."""
    machine = machine_info()
    software = software_versions()
    cpu = _lscpu()
    capacity, storage_type = _storage()
    engine_version = software.get(backend)
    framework = f"{ENGINE_NAMES.get(backend, backend)} {engine_version or '(version unknown)'}"
    other = [f"Python {platform.python_version()}", f"mlcommons-loadgen {software.get('mlcommons-loadgen')}"]
    other += [f"{name} {version}" for name, version in software.items()
              if version and name not in (backend, "mlcommons-loadgen", "torch", "sparseml", "transformers")]
    detected = {
        "host_processor_model_name": machine["cpu_model"],
        "host_processors_per_node": str(machine["sockets"]),
        "host_processor_core_count": str(machine["cores_per_socket"] or machine["physical_cores"]),
        "host_processor_frequency": _frequency(cpu),
        "host_processor_caches": _caches(cpu),
        "host_memory_capacity": f"{machine['memory_gb']:.0f}GB",
        "host_memory_configuration": f"{machine['memory_gb']:.0f}GB total (DIMM layout not visible to the OS)",
        "host_storage_capacity": capacity,
        "host_storage_type": storage_type,
        "operating_system": f"{machine['distribution'] or platform.system()} (kernel {platform.release()})",
        "framework": framework,
        "other_software_stack": ", ".join(other),
        "hw_notes": (
            f"{machine['sockets']} socket(s) x {machine['cores_per_socket']} core(s), "
            f"{machine['threads_per_core']} thread(s) per core, {machine['logical_cpus']} logical CPUs; "
            f"ISA: {', '.join(machine['isa']) or 'baseline x86-64'}"
        ),
        **CPU_ONLY_FIELDS,
    }
    return {k: v for k, v in detected.items() if v not in (None, "")}


def slugify(text: str) -> str:
    """A directory-safe system name: letters, digits, '-', '_' and '.' (never leading)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._")
    return slug or "system"


def cluster_facts(cluster: dict) -> dict[str, str]:
    """System fields of a run on a Ray cluster: the nodes that computed (the Ray workers), not the driver."""
    nodes = cluster.get("nodes") or []
    models = sorted({str(node.get("cpu_model")) for node in nodes})
    cpus = sorted({int(node["node_cpus"]) for node in nodes if node.get("node_cpus")})
    per_node = "; ".join(f"{node.get('hostname')}: {node.get('workers')} worker(s), {node.get('node_cpus')} logical CPUs"
                         for node in nodes)
    return {
        "number_of_nodes": str(cluster.get("number_of_nodes") or len(nodes)),
        "host_processor_model_name": " / ".join(models),
        "host_processor_core_count": " / ".join(map(str, cpus)),
        "hw_notes": (f"Ray {cluster.get('ray_version')} cluster of {len(nodes)} node(s) ({per_node}); "
                     f"{cluster.get('workers')} engine worker(s) with {cluster.get('cpus_per_worker')} CPUs each; "
                     "LoadGen and the scheduling ran on a separate driver; core counts are logical CPUs per node"),
    }


def build_system_description(
    template: dict, *, division: str, submitter: str | None, backend: str, extra_sw_notes: list[str] | None = None,
    cluster: dict | None = None,
) -> dict:
    """The full system JSON: detected values (of the Ray workers' nodes when ``cluster`` is given), overridden by
    the template, plus division/submitter."""
    if division not in rules.DIVISIONS:
        raise ConfigError(f"--division {division!r}: expected one of {', '.join(rules.DIVISIONS)}")
    description = detect_system(backend)
    if cluster:
        description.update(cluster_facts(cluster))
    description.update({k: v for k, v in template.items() if v is not None and k not in TEMPLATE_ONLY_KEYS})
    description["division"] = division
    if submitter:
        description["submitter"] = submitter
    if not description.get("submitter"):
        raise ConfigError("no submitter: pass --submitter ORG or set \"submitter\" in the system template")
    if not description.get("system_name"):
        description["system_name"] = f"{description['host_processor_model_name']} ({machine_info()['logical_cpus']} CPUs)"
    notes = [str(description.get("sw_notes") or "").strip()] + list(extra_sw_notes or [])
    description["sw_notes"] = " ".join(n.rstrip(".") + "." for n in notes if n)
    for field in rules.SYSTEM_REQUIRED_FIELDS:  # optional-content fields may stay empty, but must exist
        description.setdefault(field, "")
    # 'is_network' must be absent (not "false"): the checker demands the network fields once the key exists
    description.pop("is_network", None)
    ordered = {field: description[field] for field in rules.SYSTEM_REQUIRED_FIELDS}
    ordered.update({k: v for k, v in description.items() if k not in ordered})
    return {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in ordered.items()}


def system_description_problems(description: dict, *, division: str, submitter: str) -> list[str]:
    """What the checker's system checks would reject (system_check.SystemCheck)."""
    problems = []
    for field in rules.SYSTEM_REQUIRED_FIELDS:
        if field not in description:
            problems.append(f"field {field!r} is missing")
        elif field in rules.SYSTEM_MEANINGFUL_FIELDS and not str(description[field]).strip():
            problems.append(f"field {field!r} needs a meaningful value (set it in the system template)")
    if str(description.get("status", "")).lower() not in rules.AVAILABILITIES:
        problems.append(f"status {description.get('status')!r}: expected one of {', '.join(rules.AVAILABILITIES)}")
    if description.get("system_type") not in rules.SYSTEM_TYPES:
        problems.append(f"system_type {description.get('system_type')!r}: expected one of {', '.join(rules.SYSTEM_TYPES)}")
    if str(description.get("submitter", "")).lower() != submitter.lower():
        problems.append(f"submitter {description.get('submitter')!r} differs from the directory name {submitter!r}")
    if str(description.get("division", "")).lower() != division.lower():
        problems.append(f"division {description.get('division')!r} differs from the directory name {division!r}")
    if "is_network" in description:
        problems.append("'is_network' is set: the network division's extra fields would be required")
    return problems
