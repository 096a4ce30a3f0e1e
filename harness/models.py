"""Finding and validating the ONNX question-answering model a run will use.

``--model`` accepts a local model directory (``model.onnx`` plus optional ``manifest.json`` written by
``compression``), a path to an ``.onnx`` file, a SparseZoo stub (``zoo:...``) or a Hugging Face model id
(``org/name``). Every problem is reported here, before LoadGen starts, as one :class:`ModelError`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ModelError

log = logging.getLogger(__name__)

# Accepted spellings of the three inputs: Hugging Face exports and the MLPerf BERT reference model.
INPUT_ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "input_ids": ("input_ids",),
    "attention_mask": ("attention_mask", "input_mask"),
    "token_type_ids": ("token_type_ids", "segment_ids"),
}
START_OUTPUT_NAMES = ("start_logits", "output_start_logits")
END_OUTPUT_NAMES = ("end_logits", "output_end_logits")

MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"


@dataclass
class ModelInfo:
    """A validated ONNX QA model and what the harness needs to know about its interface."""

    onnx_path: Path
    input_names: dict[str, str]  # role ("input_ids", "attention_mask", "token_type_ids") -> model name
    start_output: str
    end_output: str
    sequence_length: int | None  # None when the sequence axis is dynamic
    batch_size: int | None  # None when the batch axis is dynamic
    manifest: dict = field(default_factory=dict)
    embedding_rows: int | None = None  # rows of the word embedding the input ids index (None: not found)

    @property
    def model_dir(self) -> Path:
        return self.onnx_path.parent

    @property
    def trained(self) -> bool | None:
        """False for the architecture-faithful untrained benchmark models; None when unknown."""
        value = self.manifest.get("trained")
        return value if isinstance(value, bool) else None

    @property
    def label(self) -> str:
        name = self.manifest.get("name") or self.onnx_path.parent.name
        return f"{name} (UNTRAINED)" if self.trained is False else name

    def describe(self) -> dict:
        return {
            "path": str(self.onnx_path),
            "name": self.manifest.get("name", self.onnx_path.parent.name),
            "trained": self.trained,
            "precision": self.manifest.get("precision"),
            "sparsity": self.manifest.get("sparsity"),
            "num_layers": self.manifest.get("num_layers"),
            "sequence_length": self.sequence_length,
            "inputs": self.input_names,
            "outputs": [self.start_output, self.end_output],
            "warning": self.manifest.get("warning"),
        }


_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model(spec: str, *, download_dir: Path) -> ModelInfo:
    """Turn a ``--model`` value into a validated :class:`ModelInfo`.

    Local paths are tried first so that a directory called ``org/name`` is never mistaken for a hub id.
    """
    path = Path(spec).expanduser()
    if spec.startswith("zoo:"):
        return inspect_onnx_model(_download_sparsezoo(spec, download_dir))
    if path.exists():
        return inspect_onnx_model(_onnx_file_in(path))
    if _HF_ID.match(spec) and not path.parent.is_dir():
        return inspect_onnx_model(_download_hf(spec, download_dir))
    raise ModelError(
        f"--model {spec!r}: no such file or directory (expected a model directory holding {ONNX_FILE}, "
        "an .onnx file, a Hugging Face model id like 'org/name', or a SparseZoo 'zoo:' stub)"
    )


def _onnx_file_in(path: Path) -> Path:
    if path.is_file():
        return path
    preferred = path / ONNX_FILE
    if preferred.is_file():
        return preferred
    candidates = sorted(path.glob("*.onnx"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelError(f"--model {path}: the directory holds no .onnx file (expected {ONNX_FILE})")
    raise ModelError(
        f"--model {path}: the directory holds several .onnx files "
        f"({', '.join(c.name for c in candidates)}); name one, or call it {ONNX_FILE}"
    )


def _static_dim(dim) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def inspect_onnx_model(onnx_path: Path) -> ModelInfo:
    """Read the graph's interface (no weights) and check it is a BERT-style extractive QA model."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ... depending on the damage
        raise ModelError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    graph = model.graph
    if not graph.node:
        raise ModelError(f"{onnx_path}: not a readable ONNX model (the graph has no nodes)")

    initializers = {init.name for init in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in initializers}
    roles: dict[str, str] = {}
    for role, spellings in INPUT_ROLE_NAMES.items():
        found = [name for name in spellings if name in inputs]
        if found:
            roles[role] = found[0]
    unexpected = sorted(set(inputs) - set(roles.values()))
    if len(roles) != len(INPUT_ROLE_NAMES) or unexpected:
        expected = " / ".join("|".join(s) for s in INPUT_ROLE_NAMES.values())
        raise ModelError(
            f"{onnx_path}: unexpected model inputs {sorted(inputs)}; expected exactly three int64 inputs "
            f"named {expected}"
        )

    outputs = [o.name for o in graph.output]
    start = next((n for n in START_OUTPUT_NAMES if n in outputs), None)
    end = next((n for n in END_OUTPUT_NAMES if n in outputs), None)
    if start is None or end is None:
        raise ModelError(
            f"{onnx_path}: unexpected model outputs {outputs}; expected start and end logits named "
            f"{'|'.join(START_OUTPUT_NAMES)} and {'|'.join(END_OUTPUT_NAMES)}"
        )

    dims = inputs[roles["input_ids"]].type.tensor_type.shape.dim
    if len(dims) != 2:
        raise ModelError(f"{onnx_path}: input {roles['input_ids']!r} has rank {len(dims)}, expected [batch, sequence]")
    manifest = _read_manifest(onnx_path.parent)
    return ModelInfo(
        onnx_path=onnx_path.resolve(),
        input_names=roles,
        start_output=start,
        end_output=end,
        batch_size=_static_dim(dims[0]),
        sequence_length=_static_dim(dims[1]),
        manifest=manifest,
        embedding_rows=_word_embedding_rows(graph, roles["input_ids"]) or _config_vocab_size(onnx_path.parent),
    )


def _word_embedding_rows(graph, input_ids: str) -> int | None:
    """Rows of the table a Gather looks the input ids up in (through Casts), from the graph's initializers;
    None when the graph has no such lookup (the shapes are read without loading any weights)."""
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    ids_names = {input_ids}
    for node in graph.node:  # Cast chains on the ids (int64 -> int32 exports) keep them the ids
        if node.op_type == "Cast" and node.input and node.input[0] in ids_names:
            ids_names.update(node.output)
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] in ids_names:
            table = shapes.get(node.input[0])
            if table is not None and len(table) == 2:
                return int(table[0])
    return None


def _config_vocab_size(model_dir: Path) -> int | None:
    """``vocab_size`` of a Hugging Face ``config.json`` beside the model, if any."""
    try:
        value = json.loads((model_dir / "config.json").read_text()).get("vocab_size")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def check_vocab_fits(model: ModelInfo, vocab: Path, *, sample: bool = False) -> dict:
    """Check that the token ids of ``vocab`` are ids of the model's embedding, before anything runs.

    More vocabulary entries than embedding rows would index past the table (an engine error mid-run): an
    error. A model directory that ships its own ``vocab.txt`` must be given exactly that vocabulary (other
    ids mean other tokens to the model), except with the built-in sample, whose small vocabulary is by
    design not the model's. Fewer entries than rows is allowed (some exports pad the table) but noted.
    Returns what was checked, with a ``note`` when there is something to record."""
    entries = sum(1 for _ in vocab.open(encoding="utf-8", errors="replace"))
    check: dict = {"vocab_entries": entries, "embedding_rows": model.embedding_rows, "note": None}
    rows = model.embedding_rows
    if rows is not None and entries > rows:
        raise ModelError(
            f"vocabulary {vocab} has {entries} entries but the model's word embedding ({model.onnx_path}) has {rows} "
            f"rows: token ids up to {entries - 1} would index past it; use the vocabulary the model was trained with"
        )
    own = model.model_dir / "vocab.txt"
    if own.is_file() and not sample and own.resolve() != vocab.resolve() and own.read_bytes() != vocab.read_bytes():
        raise ModelError(
            f"vocabulary {vocab} differs from the model's own {own}: the same token would get another id than the "
            "model was trained with; use that vocabulary (or a data dir holding it)"
        )
    if rows is not None and entries < rows and not sample:
        check["note"] = (f"vocabulary {vocab} has {entries} entries, the model's word embedding {rows} rows: check "
                         "that it is the vocabulary the model was trained with")
    return check


def check_model_fits(model: ModelInfo, max_seq_length: int) -> None:
    """The model must take windows of the length the features were built with."""
    if model.sequence_length is not None and model.sequence_length != max_seq_length:
        raise ModelError(
            f"{model.onnx_path}: the model takes sequences of {model.sequence_length} tokens, but the features "
            f"are {max_seq_length}-token windows; export the model at sequence length {max_seq_length}"
        )


def _read_manifest(model_dir: Path) -> dict:
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        return {}
    try:
        return json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{manifest_path}: not valid JSON ({exc})") from exc


def _download_sparsezoo(stub: str, download_dir: Path) -> Path:
    """Fetch a SparseZoo deployment (needs internet)."""
    try:
        from sparsezoo import Model
    except ImportError as exc:  # pragma: no cover - sparsezoo is a pinned dependency
        raise ModelError(f"--model {stub}: sparsezoo is not installed") from exc
    target = download_dir / re.sub(r"[^\w.-]+", "_", stub)
    try:
        zoo_model = Model(stub, download_path=str(target))
        deployment_dir = Path(zoo_model.deployment.path)
    except Exception as exc:
        raise ModelError(
            f"--model {stub}: could not fetch the SparseZoo model ({type(exc).__name__}: {exc}). "
            "Zoo stubs need internet access; offline, pass a local model directory instead."
        ) from exc
    return _onnx_file_in(deployment_dir)


def _download_hf(model_id: str, download_dir: Path) -> Path:
    """Fetch a Hugging Face model (needs internet); export it to ONNX when the repo holds no ONNX file."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - comes with transformers
        raise ModelError(f"--model {model_id}: huggingface_hub is not installed") from exc
    target = download_dir / model_id.replace("/", "__")
    try:
        snapshot = Path(
            snapshot_download(
                model_id,
                local_dir=str(target / "hub"),
                allow_patterns=["*.json", "*.txt", "*.onnx", "*.safetensors", "*.bin"],
                etag_timeout=10,
            )
        )
    except Exception as exc:
        raise ModelError(
            f"--model {model_id}: could not download from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Hub ids need internet access; offline, pass "
            "a local model directory instead."
        ) from exc
    onnx_files = sorted(snapshot.rglob("*.onnx"))
    if onnx_files:
        return onnx_files[0]
    exported = target / "onnx"
    if not (exported / ONNX_FILE).is_file():
        log.info("%s has no ONNX file; exporting the PyTorch checkpoint at sequence length 384", model_id)
        from compression.export import export_pretrained_dir

        export_pretrained_dir(snapshot, exported, sequence_length=384)
    return exported / ONNX_FILE
