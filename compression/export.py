"""The single export path: PyTorch QA model -> self-describing model directory.

A model directory holds ``model.onnx`` (inputs ``input_ids``/``attention_mask``/``token_type_ids``, int64
[batch, seq]; outputs ``start_logits``/``end_logits`` [batch, seq]; dynamic batch axis), ``config.json``,
the tokenizer files, ``manifest.json`` (what the model is and how it was made, including whether it was
trained) and a short ``README.md``. The harness reads it with ``harness.models``.

ONNX goes through sparseml's ``ModuleExporter``. A QAT model is traced once into its fake-quant
(QuantizeLinear/DequantizeLinear) graph, from which ``compression.qdq`` writes two forms: ``model.onnx`` in
DeepSparse's INT8 operators (sparseml's ONNXToDeepsparse pass, which turns each quantized Linear into
``MatMulInteger`` + rescale when its output activation is not quantized, and quantizes the embedding tables:
what ``convert_qat=True`` does) and ``model-qdq.onnx``, the standard QDQ form with int8 weight initializers
that OpenVINO and ONNX Runtime run on their INT8 kernels. ``dynamo=False`` is passed through to ``torch.onnx.export``: torch 2.9+
defaults to the dynamo exporter, which needs ``onnxscript`` (not installed) and does not emit the
QuantizeLinear/DequantizeLinear pairs sparseml's conversion expects; sparseml forwards extra keyword
arguments to ``torch.onnx.export`` unchanged, so no monkeypatching is needed.

Everything is written to a staging directory next to the target and renamed into place at the end, so
a failed export never leaves a half-written model where the harness would pick it up.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from compression.errors import CompressionError, ExportError, OutputExistsError
from compression.packed import PACKED_INPUT_NAMES, PackedQAModel, synthetic_packed_batch
from compression.qdq import QDQ_ONNX_FILE, fold_weight_quantization, to_integer_form
from engine_introspection.openvino import QDQ_WEIGHT_LAYOUT
from compression.quantize import is_qat_model, weights_snapped_to_quantized_values
from compression.synthetic import INPUT_NAMES, synthetic_qa_batch

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
PACKED_ONNX_FILE = "model-packed.onnx"
PACKED_QDQ_ONNX_FILE = "model-packed-qdq.onnx"  # the packed variant of an INT8 model in QDQ form (OpenVINO's)
MANIFEST_FILE = "manifest.json"
README_FILE = "README.md"
OUTPUT_NAMES = ("start_logits", "end_logits")
# sparseml's default for torch >= 1.10; converting QAT graphs needs opset >= 13.
ONNX_OPSET = 14
MANIFEST_FORMAT_VERSION = 1

UNTRAINED_WARNING = (
    "UNTRAINED MODEL: the weights are random (only the architecture, sparsity pattern and precision are "
    "real). Accuracy numbers (F1, exact match) measured with it are meaningless; speed numbers "
    "(throughput, latency) are valid for the real oBERT-MobileBERT of the same geometry, sparsity and precision."
)


def load_vocab_tokenizer(vocab: Path, vocab_size: int | None = None, model_max_length: int = 512):
    """A lower-casing ``BertTokenizerFast`` from a WordPiece vocabulary file, checked against the model."""
    from transformers import BertTokenizerFast

    vocab = Path(vocab)
    if not vocab.is_file():
        raise CompressionError(f"vocabulary file {vocab} does not exist (expected the BERT uncased vocab.txt)")
    try:
        tokens = vocab.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CompressionError(f"vocabulary file {vocab} is not readable UTF-8 text ({exc})") from exc
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t not in tokens]
    if missing:
        raise CompressionError(f"vocabulary file {vocab} lacks the BERT special tokens {', '.join(missing)}")
    if vocab_size is not None and len(tokens) != vocab_size:
        raise CompressionError(
            f"vocabulary file {vocab} has {len(tokens)} entries but the model's vocab_size is {vocab_size}"
        )
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=model_max_length)


def export_onnx(
    model: torch.nn.Module,
    onnx_path: Path,
    *,
    sequence_length: int = 384,
    quantized: bool,
    opset: int = ONNX_OPSET,
    packed: bool = False,
    qdq_path: Path | None = None,
) -> Path:
    """Export ``model`` to ``onnx_path`` with sparseml (INT8 ops when ``quantized``); return the path.
    ``packed``: the packed-input variant (``compression.packed``: several windows per ``sequence_length`` row,
    inputs ``input_ids``/``window_ids``/``token_type_ids``/``position_ids``). ``qdq_path`` (``quantized`` only):
    also write the QDQ form of the same traced graph there (``compression.qdq``)."""
    from sparseml.pytorch.utils import ModuleExporter

    if quantized != is_qat_model(model):
        raise ExportError(
            f"quantized={quantized} but the model {'has' if is_qat_model(model) else 'has no'} fake-quantize "
            "modules (prepare it with compression.quantize.prepare_qat for an INT8 export)"
        )
    if qdq_path is not None and not quantized:
        raise ExportError("a QDQ form exists only for an INT8 (quantized) export")
    onnx_path = Path(onnx_path)
    if packed:
        module, input_names = PackedQAModel(model), PACKED_INPUT_NAMES
        sample = synthetic_packed_batch(1, sequence_length, vocab_size=model.config.vocab_size, seed=0)
    else:
        module, input_names = model, INPUT_NAMES
        sample = synthetic_qa_batch(1, sequence_length, vocab_size=model.config.vocab_size, seed=0)
    was_training = model.training
    model.eval()
    try:
        # an INT8 file must hold exactly the integers the QAT model computes with (the model is left as it was)
        snapped = weights_snapped_to_quantized_values(model) if quantized else contextlib.nullcontext()
        with warnings.catch_warnings(), snapped:
            # The TorchScript exporter warns about every traced shape/constant; none of it is actionable.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", module=r"torch\.onnx")
            warnings.filterwarnings("ignore", module=r"sparseml\.exporters")  # torch.quantize_per_tensor deprecation
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            ModuleExporter(module, output_dir=str(onnx_path.parent)).export_onnx(
                sample,
                name=onnx_path.name,
                opset=opset,
                convert_qat=False,  # the fake-quant graph; both INT8 forms are made from it below
                input_names=list(input_names),
                output_names=list(OUTPUT_NAMES),
                dynamo=False,
            )
    except Exception as exc:
        raise ExportError(f"ONNX export to {onnx_path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    if quantized:
        _write_int8_forms(onnx_path, qdq_path)
    _fix_interface(onnx_path, sequence_length, input_names)
    if qdq_path is not None:
        _fix_interface(Path(qdq_path), sequence_length, input_names)
    return onnx_path


def _write_int8_forms(traced_path: Path, qdq_path: Path | None) -> None:
    """Replace the traced fake-quant graph at ``traced_path`` with its integer form; write its QDQ form to
    ``qdq_path`` when given."""
    import onnx

    traced = onnx.load(str(traced_path))
    try:
        if qdq_path is not None:
            qdq = onnx.ModelProto()
            qdq.CopyFrom(traced)
            folding = fold_weight_quantization(qdq)
            if not folding.weights_folded:
                raise ExportError(f"{traced_path}: the traced graph has no quantized weights to fold into the QDQ form")
            log.info("QDQ form: %d weights stored as integers", folding.weights_folded)
            onnx.save(qdq, str(qdq_path))
        onnx.save(to_integer_form(traced), str(traced_path))
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"converting the traced INT8 graph {traced_path} failed: {type(exc).__name__}: {exc}") from exc


def _fix_interface(onnx_path: Path, sequence_length: int, input_names: tuple[str, ...] = INPUT_NAMES) -> None:
    """Pin the documented interface: int64 [batch, seq] inputs, [batch, seq] outputs, checker-clean.

    The TorchScript exporter leaves the logits' sequence axis as a symbolic name derived from a Squeeze.
    """
    import onnx

    model = onnx.load(str(onnx_path))
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if [i.name for i in inputs] != list(input_names):
        raise ExportError(f"{onnx_path}: graph inputs are {[i.name for i in inputs]}, expected {list(input_names)}")
    if [o.name for o in graph.output] != list(OUTPUT_NAMES):
        raise ExportError(f"{onnx_path}: graph outputs are {[o.name for o in graph.output]}, expected {list(OUTPUT_NAMES)}")
    for value in [*inputs, *graph.output]:
        tensor_type = value.type.tensor_type
        if value.name in input_names and tensor_type.elem_type != onnx.TensorProto.INT64:
            raise ExportError(f"{onnx_path}: input {value.name} is not int64")
        dims = tensor_type.shape.dim
        if len(dims) != 2:
            raise ExportError(f"{onnx_path}: {value.name} has rank {len(dims)}, expected [batch, sequence]")
        dims[0].Clear()
        dims[0].dim_param = "batch"
        dims[1].Clear()
        dims[1].dim_value = sequence_length
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))


def _software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "transformers", "sparseml", "onnx"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def _percent(value: Any, suffix: str) -> str | None:
    return f"{100 * value:.2f}% {suffix}" if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _readme(manifest: Mapping[str, Any]) -> str:
    lines = [f"# {manifest.get('name', 'model')}", ""]
    if manifest.get("trained") is False:
        lines += [f"> **{manifest.get('warning', UNTRAINED_WARNING)}**", ""]
    if manifest.get("description"):
        lines += [str(manifest["description"]), ""]
    facts = [
        ("trained", manifest.get("trained")),
        ("precision", manifest.get("precision")),
        ("encoder layers", manifest.get("num_layers")),
        ("sparsity", _percent(manifest.get("sparsity"), "of the weights the oBERT recipe prunes")),
        ("block pattern", manifest.get("block_pattern")),
        ("sequence length", manifest.get("sequence_length")),
        ("inputs", ", ".join(manifest.get("input_names", []))),
        ("outputs", ", ".join(manifest.get("output_names", []))),
    ]
    lines += ["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in facts if value is not None), ""]
    if manifest.get("steps"):
        lines += ["## How it was made", "", *(f"1. {step}" for step in manifest["steps"]), ""]
    lines += [
        "## Files",
        "",
        f"- `{ONNX_FILE}`: the ONNX graph (runs on DeepSparse and ONNX Runtime)",
        *([f"- `{QDQ_ONNX_FILE}`: the same INT8 model in the standard QuantizeLinear/DequantizeLinear form (what "
           "OpenVINO runs on its INT8 kernels)"] if manifest.get("qdq") else []),
        *([f"- `{PACKED_ONNX_FILE}`" + (f", `{PACKED_QDQ_ONNX_FILE}`" if (manifest.get("packed") or {}).get("qdq_onnx_file")
                                         else "") + ": the packed-input variant (several windows per row; `--packing`)"]
          if manifest.get("packed") else []),
        f"- `{MANIFEST_FILE}`: machine-readable description (read by the harness)",
        ("- `config.json`, tokenizer files: Hugging Face config and the BERT uncased tokenizer"
         if manifest.get("tokenizer", "vocab.txt") else
         "- `config.json`: Hugging Face config (no tokenizer files: built without the bert-base-uncased vocab, so "
         "the harness tokenizes with the data directory's vocab)"),
        "",
        "Use it with the harness by passing this directory as `--model`.",
        "",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def _staging_dir(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty directory beside ``out_dir``; on success move it to ``out_dir``, else delete it."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputExistsError(f"output path {out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not overwrite:
            raise OutputExistsError(
                f"output directory {out_dir} already exists and is not empty; pass overwrite=True "
                "(obert-compress: --overwrite) to replace it"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp creates 0700
        if out_dir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, retired / out_dir.name)
            os.replace(staging, out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def export_model_dir(
    model: torch.nn.Module,
    out_dir: Path,
    *,
    vocab: Path | None = None,
    tokenizer: Any = None,
    sequence_length: int = 384,
    quantized: bool,
    manifest: Mapping[str, Any],
    overwrite: bool = False,
    extra_files: Mapping[str, Path] | None = None,
    before_publish: Callable[[Path], None] | None = None,
    packed_variant: bool = False,
) -> Path:
    """Export ``model`` into the model directory ``out_dir`` and return it.

    Give the tokenizer as a WordPiece ``vocab`` file or as a ready ``tokenizer`` object (neither: no
    tokenizer files, and the manifest's ``tokenizer`` is null). ``manifest``
    describes the model and must contain ``trained`` (True/False, or None when unknown); the interface
    fields (precision, sequence length, input/output names, opset, file sizes, software versions) are
    added here. ``extra_files`` (name -> existing file) are copied in; ``before_publish`` runs on the
    finished staging directory (e.g. verification) and can veto publishing by raising. ``packed_variant``
    also writes the packed-input variant (``compression.packed``) as ``model-packed.onnx``.
    """
    out_dir = Path(out_dir)
    if "trained" not in manifest:
        raise CompressionError("the manifest must say whether the model is trained ('trained': true/false/null)")
    if vocab is not None and tokenizer is not None:
        raise CompressionError("export_model_dir takes one of vocab= or tokenizer=, not both")
    if vocab is not None:
        tokenizer = load_vocab_tokenizer(Path(vocab), vocab_size=getattr(model.config, "vocab_size", None))

    with _staging_dir(out_dir, overwrite) as staging:
        started = time.perf_counter()
        log.info("exporting %s ONNX (sequence length %d) to %s", "INT8" if quantized else "FP32", sequence_length, out_dir)
        export_onnx(model, staging / ONNX_FILE, sequence_length=sequence_length, quantized=quantized,
                    qdq_path=staging / QDQ_ONNX_FILE if quantized else None)
        onnx_files = [ONNX_FILE, QDQ_ONNX_FILE] if quantized else [ONNX_FILE]
        if packed_variant:
            export_onnx(model, staging / PACKED_ONNX_FILE, sequence_length=sequence_length, quantized=quantized,
                        packed=True, qdq_path=staging / PACKED_QDQ_ONNX_FILE if quantized else None)
            onnx_files += [PACKED_ONNX_FILE, PACKED_QDQ_ONNX_FILE] if quantized else [PACKED_ONNX_FILE]
        log.info("ONNX export took %.1f s", time.perf_counter() - started)
        for leftover in staging.iterdir():  # exporter side files (external data, intermediates) are not wanted
            if leftover.name not in onnx_files:
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()

        model.config.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, staging / name)

        full_manifest: dict[str, Any] = {
            "format_version": MANIFEST_FORMAT_VERSION,
            "name": out_dir.name,
            **manifest,
            "precision": "int8" if quantized else "fp32",
            "onnx_file": ONNX_FILE,
            "onnx_opset": ONNX_OPSET,
            "sequence_length": sequence_length,
            "input_names": list(INPUT_NAMES),
            "output_names": list(OUTPUT_NAMES),
            "inputs": {name: {"dtype": "int64", "shape": ["batch", sequence_length]} for name in INPUT_NAMES},
            "outputs": {name: {"dtype": "float32", "shape": ["batch", sequence_length]} for name in OUTPUT_NAMES},
            "tokenizer": "vocab.txt" if tokenizer is not None else None,  # None: tokenize with the data's vocab
            # the packed-input variant (compression.packed), read by the harness's --packing
            "packed": {"onnx_file": PACKED_ONNX_FILE, "input_names": list(PACKED_INPUT_NAMES),
                       "row_length": sequence_length,
                       "qdq_onnx_file": PACKED_QDQ_ONNX_FILE if quantized else None} if packed_variant else None,
            # the same INT8 model in the standard QDQ form (compression.qdq), what OpenVINO runs
            "qdq": {"onnx_file": QDQ_ONNX_FILE, "weight_layout": QDQ_WEIGHT_LAYOUT} if quantized else None,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "software": _software_versions(),
        }
        if full_manifest["trained"] is False:
            full_manifest.setdefault("warning", UNTRAINED_WARNING)
        (staging / README_FILE).write_text(_readme(full_manifest))
        full_manifest["files"] = {p.name: p.stat().st_size for p in sorted(staging.iterdir()) if p.is_file()}
        (staging / MANIFEST_FILE).write_text(json.dumps(full_manifest, indent=2) + "\n")

        if before_publish is not None:
            before_publish(staging)
    log.info("wrote %s", out_dir)
    return out_dir


def export_pretrained_dir(
    checkpoint_dir: Path, out_dir: Path, *, sequence_length: int = 384, overwrite: bool = False
) -> Path:
    """Export a Hugging Face question-answering checkpoint directory (PyTorch weights) to a model dir.

    Used by the harness for hub models that ship no ONNX file. The checkpoint's own tokenizer is kept.
    """
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    checkpoint_dir = Path(checkpoint_dir)
    try:
        model = AutoModelForQuestionAnswering.from_pretrained(str(checkpoint_dir)).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    except Exception as exc:
        raise ExportError(
            f"{checkpoint_dir}: not a loadable Hugging Face question-answering checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    accepted = inspect.signature(model.forward).parameters
    if not all(name in accepted for name in INPUT_NAMES):
        raise ExportError(
            f"{checkpoint_dir}: {type(model).__name__} does not take all of {', '.join(INPUT_NAMES)}; "
            "the harness needs BERT-style QA models"
        )
    manifest = {
        "name": checkpoint_dir.name,
        "description": f"{type(model).__name__} exported from the PyTorch checkpoint {checkpoint_dir}",
        "trained": None,  # unknown: a published checkpoint, not built here
        "num_layers": getattr(model.config, "num_hidden_layers", None),
        "steps": [f"export to ONNX (FP32) at sequence length {sequence_length}"],
    }
    return export_model_dir(
        model, out_dir, tokenizer=tokenizer, sequence_length=sequence_length, quantized=False,
        manifest=manifest, overwrite=overwrite,
    )
