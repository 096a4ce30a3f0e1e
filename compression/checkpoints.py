"""Model checkpoints as the pipeline reads and writes them: Hugging Face directories (a plain model) and QAT
directories (state dict + config + tokenizer + the recipe that rebuilds the quantization structure).

``load_qa_model`` accepts either, a local Hugging Face directory or a hub id.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from compression.errors import CompressionError
from compression.families import family_of, qa_model_class

log = logging.getLogger(__name__)

QAT_STATE_FILE = "qat_model.pt"
QAT_INFO_FILE = "qat_model.json"


def load_tokenizer(spec: str | Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(spec))
    except Exception as exc:
        raise CompressionError(_load_error(spec, "tokenizer", exc)) from None


def _load_error(spec: str | Path, what: str, exc: Exception) -> str:
    local = Path(str(spec)).exists()
    hint = ("not a Hugging Face checkpoint directory" if local else
            "not a local directory, and the Hugging Face hub could not be reached (it needs internet; offline, "
            "pass a local checkpoint directory, or use --preset smoke)")
    return f"cannot load the {what} {str(spec)!r}: {hint} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"


def load_qa_model(spec: str | Path, *, role: str = "model") -> torch.nn.Module:
    """A question-answering model: a QAT checkpoint of this pipeline, a local HF directory or a hub id.

    ``role="teacher"``: a checkpoint without a trained QA head is refused. Transformers gives such a checkpoint (a
    pretrained encoder) a freshly initialised head on every load, so distillation would pull the student towards
    noise, differently each run, and nothing downstream says why F1 collapsed. A student without one is accepted
    with a warning (pruning then trains the head from the teacher's logits)."""
    if (Path(str(spec)) / QAT_STATE_FILE).is_file():
        return load_qat_model(Path(spec))
    from transformers import AutoModelForQuestionAnswering

    try:
        model, loading = AutoModelForQuestionAnswering.from_pretrained(str(spec), output_loading_info=True)
    except Exception as exc:
        raise CompressionError(_load_error(spec, "model", exc)) from None
    family_of(model)  # a supported family, or one clear error
    new_head = sorted(key for key in loading.get("missing_keys", []) if key.startswith("qa_outputs."))
    if new_head and role == "teacher":
        raise CompressionError(
            f"the teacher {str(spec)!r} has no trained question-answering head ({', '.join(new_head)} not in the "
            "checkpoint: it is a pretrained encoder, not a QA model), so distillation would follow a random head; "
            "pass a checkpoint fine-tuned on SQuAD as --teacher (docs/compression.md, Compress your own BERT QA model)")
    if new_head:
        log.warning("%s %s has no trained question-answering head (%s): it starts from a random one", role, spec,
                    ", ".join(new_head))
    return model


def save_checkpoint_dir(model: torch.nn.Module, tokenizer, out_dir: Path, extra: dict[str, Any]) -> Path:
    """A plain (non-QAT) model as a Hugging Face checkpoint directory."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "compression_info.json").write_text(json.dumps(extra, indent=2, default=str) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def save_qat_dir(model: torch.nn.Module, tokenizer, recipe_path: Path, out_dir: Path, extra: dict[str, Any]) -> Path:
    """A QAT model: its state dict (weights, fake-quant scales, observer flags) + config + tokenizer + the
    recipe that rebuilds its structure (:func:`load_qat_model`)."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / QAT_STATE_FILE)
    model.config.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.copyfile(recipe_path, tmp / "recipe.yaml")
    (tmp / QAT_INFO_FILE).write_text(json.dumps(extra, indent=2, default=str) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def load_qat_model(model_dir: Path) -> torch.nn.Module:
    """Rebuild a QAT model saved by :func:`save_qat_dir`: same structure from its recipe, then its state."""
    from transformers import AutoConfig

    from compression.quantize import load_manager
    from compression.sparseml_logging import sparseml_loggers

    model_dir = Path(model_dir)
    config = AutoConfig.from_pretrained(str(model_dir))
    model = qa_model_class(family_of(config))(config)
    manager = load_manager(model_dir / "recipe.yaml")
    manager.initialize(model, epoch=0.0, loggers=sparseml_loggers())  # wraps the modules exactly as in training
    manager.finalize(model)
    state = torch.load(model_dir / QAT_STATE_FILE, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CompressionError(f"{model_dir}: the QAT state does not fit the structure its recipe builds ({exc})") from None
    return model.eval()
