"""A step's data: labelled training windows and held-out evaluation windows (:func:`prepare_data`), and the
held-out evaluation of a PyTorch model (:func:`evaluate_model`)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from compression.dev_split import DEV_SPLIT_NOTE, split_dev_by_article
from compression.errors import CompressionError
from compression.evaluate import evaluate_loss, evaluate_squad, load_eval_features
from compression.squad_records import HF_SQUAD_SOURCE, limit_records, load_hf_squad, read_squad_records
from compression.steps.config import RunConfig
from compression.train import resolve_device
from compression.train_features import TrainFeatures, WindowParams, feature_stats, load_or_build_train_features
from squad.data import find_dataset
from squad.features import FeatureParams

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    train_features: TrainFeatures
    train_source: str
    eval_json: Path
    vocab: Path
    eval_params: FeatureParams
    notes: list[str]
    split: dict[str, Any] | None = None
    heldout_features: TrainFeatures | None = None  # training-format windows of the eval file, for the loss
    eval_features: Any = None
    coverage: dict[str, Any] | None = None  # which training articles the windows come from (TrainFeatures.article_coverage)

    def describe(self) -> dict[str, Any]:
        return {
            "train_source": self.train_source, "train": feature_stats(self.train_features), "coverage": self.coverage,
            "eval_json": str(self.eval_json), "eval_windows": len(self.eval_features) if self.eval_features else None,
            "eval_params": asdict(self.eval_params), "split": self.split, "notes": self.notes,
        }


def dataset_files(config: RunConfig):
    from squad.data import resolve_data_dir

    data_dir = config.data_dir or resolve_data_dir(None)
    return find_dataset(data_dir, sample_dir=config.out_dir / "data" / "sample", allow_sample=False)


def prepare_data(config: RunConfig, tokenizer, window: WindowParams | None = None) -> DataBundle:
    """Training windows (labelled) and evaluation windows for one step."""
    preset = config.preset
    source = config.train_data or preset.train_data
    data_root = config.out_dir / "data"
    notes: list[str] = []
    split = None
    files = None
    if source == "dev-split":
        files = dataset_files(config)
        dev_split = split_dev_by_article(files.dev_json, data_root, validation_articles=preset.validation_articles)
        records = read_squad_records(dev_split.train_json)
        # with a validation part, every evaluation a step makes reads it; the held-out articles are left for the end
        eval_json = config.eval_data or dev_split.validation_json or dev_split.heldout_json
        split = dev_split.summary()
        notes.append(DEV_SPLIT_NOTE)
        source_desc = f"SQuAD v1.1 dev, training articles ({dev_split.train_json})"
    elif source == HF_SQUAD_SOURCE:
        records = load_hf_squad("train")
        source_desc = "Hugging Face datasets 'squad' (train split)"
        eval_json = config.eval_data
    else:
        path = Path(source)
        if not path.is_file():
            raise CompressionError(f"--train-data {source}: no such file (expected a SQuAD v1.1-format JSON file, "
                                   f"'{HF_SQUAD_SOURCE}' or 'dev-split')")
        records = read_squad_records(path)
        source_desc = str(path)
        eval_json = config.eval_data
    if eval_json is None:
        files = files or dataset_files(config)
        eval_json = files.dev_json
    limit = config.effective_max_train_questions
    records = limit_records(records, limit)
    if limit is not None:
        notes.append(f"training on {len(records)} questions only (--max-train-questions {limit})")
    window = window or preset.window
    train_features = load_or_build_train_features(records, tokenizer, window, data_root / "features",
                                                  progress=config.progress)
    available = len(train_features)
    if preset.max_train_windows and available > preset.max_train_windows:
        if preset.train_window_selection == "sample":
            articles = [records[int(i)].title for i in train_features.example_index.tolist()]
            train_features = train_features.sample(preset.max_train_windows, seed=config.effective_seed, strata=articles)
            notes.append(f"training on {preset.max_train_windows} of the {available} windows, drawn at random (seed "
                         f"{config.effective_seed}) from every article in proportion to its windows")
        else:
            train_features = train_features.subset(preset.max_train_windows)
            notes.append(f"training on the first {preset.max_train_windows} windows only")
    coverage = train_features.article_coverage(records)
    vocab_dir = data_root / "tokenizer"
    tokenizer.save_pretrained(str(vocab_dir))
    vocab = vocab_dir / "vocab.txt"
    if not vocab.is_file():
        raise CompressionError(f"the tokenizer has no WordPiece vocab.txt ({vocab_dir}); the harness's evaluation "
                               "windows need a BERT vocabulary")
    bundle = DataBundle(train_features=train_features, train_source=source_desc, eval_json=Path(eval_json),
                        vocab=vocab, eval_params=preset.eval_params, notes=notes, split=split, coverage=coverage)
    bundle.eval_features = load_eval_features(bundle.eval_json, vocab, preset.eval_params, data_root / "features",
                                              config.effective_max_eval_windows)
    if config.effective_max_eval_windows:
        notes.append(f"evaluation on the first {len(bundle.eval_features)} windows of {bundle.eval_json.name} only")
    heldout_records = read_squad_records(bundle.eval_json)
    covered = {bundle.eval_features.examples[int(i)].qas_id for i in set(bundle.eval_features.example_index.tolist())}
    heldout_records = [r for r in heldout_records if r.qas_id in covered]
    bundle.heldout_features = load_or_build_train_features(heldout_records, tokenizer, window, data_root / "features",
                                                           progress=config.progress)
    log.info("data: %d training windows from %s; evaluation on %d windows of %s", len(train_features), source_desc,
             len(bundle.eval_features), bundle.eval_json)
    return bundle


def evaluate_model(model: torch.nn.Module, data: DataBundle, config: RunConfig, label: str) -> dict[str, Any]:
    """Held-out F1/EM (harness scoring) and loss of a PyTorch model."""
    device = resolve_device(config.device)
    result = evaluate_squad(model, data.eval_features, device=device, progress=config.progress,
                            description=f"evaluating {label}")
    if data.heldout_features is not None and len(data.heldout_features):
        result["loss"] = round(evaluate_loss(model, data.heldout_features, device=device), 6)
    result["eval_json"] = str(data.eval_json)
    log.info("%s: F1 %.2f, EM %.2f on %d questions%s", label, result["f1"], result["exact_match"], result["questions"],
             f", loss {result['loss']:.4f}" if "loss" in result else "")
    return result
