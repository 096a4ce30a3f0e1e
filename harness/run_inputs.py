"""What a command runs on: the dataset and its tokenized features, and the model (``--model``, or the default
benchmark model, built on first use by the compression pipeline, which is imported only then)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine_introspection.openvino import QDQ_WEIGHT_LAYOUT
from harness.sysinfo import REPO_ROOT

if TYPE_CHECKING:
    from harness.models import ModelInfo
    from squad.data import DatasetFiles
    from squad.features import FeatureSet

log = logging.getLogger("harness")

DEFAULT_CACHE_ENV = "OBERT_CACHE_DIR"
DEFAULT_MODELS_DIR = REPO_ROOT / "models"
MODELS_DIR_ENV = "OBERT_MODELS_DIR"  # where the default benchmark models are built and kept
# The geometry of the default model built on first use; tests set "tiny" to exercise the same path quickly.
BENCHMARK_PRESET_ENV = "OBERT_BENCHMARK_PRESET"
DEFAULT_MODEL_VARIANT = "sparse-int8"
DEFAULT_DATA_SUBDIR = "data"  # the default data dir, under the cache dir: first-run downloads go there


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --cache-dir, --no-progress (see :func:`harness.run_inputs.load_dataset_and_features`)."""
    parser.add_argument(
        "--data-dir",
        help="directory holding dev-v1.1.json and vocab.txt/bert-uncased-vocab.txt (default: $OBERT_DATA_DIR, else "
        "<cache dir>/data, where the first run downloads the official files; offline, a small built-in sample is "
        "used and results are NOT comparable)",
    )
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get(DEFAULT_CACHE_ENV, str(REPO_ROOT / "cache")),
        help="where tokenized features, the built-in sample and downloads are kept (default: ./cache or "
        "$OBERT_CACHE_DIR)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def load_dataset_and_features(args: argparse.Namespace, *, count: int | None = None) -> tuple[DatasetFiles, FeatureSet]:
    """Find the dataset (data dir, default data dir with first-run download, or the built-in sample), then
    load (or build once) the tokenized features."""
    from squad.data import locate_dataset
    from squad.features import FeatureParams, load_or_build_features, select_features

    cache_dir = Path(args.cache_dir)
    dataset = locate_dataset(args.data_dir, default_dir=cache_dir / DEFAULT_DATA_SUBDIR, sample_dir=cache_dir / "sample",
                             progress=not args.no_progress)
    features = load_or_build_features(
        dataset.dev_json, dataset.vocab, FeatureParams(), cache_dir / "features", progress=not args.no_progress
    )
    if count is not None:
        features = select_features(features, count)
    return dataset, features


def benchmark_model_dir(variant: str, vocab: Path, *, packed: bool = False, qdq: bool = False,
                        progress: bool = True) -> Path:
    """The untrained benchmark model of a variant in ./models, built on first use. Its tokenizer files are
    written only from the bert-base-uncased vocab (the model's 30,522-token geometry); with other data (the
    built-in sample) it gets none and the harness tokenizes with the data's vocab. ``packed`` / ``qdq``: a directory
    built before models carried their packed variant / the QDQ form of an INT8 model (what OpenVINO runs) is rebuilt
    with it (the same seed gives the same model). The compression pipeline (torch, sparseml: ~2.4 s and ~270 MB
    to import) is imported only to build; see :func:`default_model_dir` for finding a built one. ``progress``: the
    build's progress bars (``--no-progress`` turns them off)."""
    model_dir = default_model_dir(variant)
    exists = (model_dir / "model.onnx").is_file()
    manifest = _manifest(model_dir) if exists else {}
    int8 = manifest.get("precision") == "int8"
    missing = [why for wanted, lacking, why in (
        (packed, not manifest.get("packed"), "its packed variant for --packing"),
        (qdq, int8 and not manifest.get("qdq"), "its QDQ form for OpenVINO"),
        (qdq, int8 and bool(manifest.get("qdq")) and manifest["qdq"].get("weight_layout") != QDQ_WEIGHT_LAYOUT,
         "its QDQ form in the weight layout OpenVINO's sparse kernels read"),
        (packed and qdq, int8 and not (manifest.get("packed") or {}).get("qdq_onnx_file"),
         "the QDQ form of its packed variant for OpenVINO"),
    ) if exists and wanted and lacking]
    if not exists or missing:
        from compression.architecture import DEFAULT_PRESET
        from compression.benchmark_model import build_benchmark_model
        from compression.sparseml_logging import configure_sparseml_logging
        from squad.data import BERT_VOCAB_SHA256, file_sha256

        configure_sparseml_logging(log.isEnabledFor(logging.DEBUG))
        why = f"to add {' and '.join(missing)}" if missing else "first use only"
        print(f"building the benchmark model {model_dir} ({why}, a few minutes)", file=sys.stderr)
        tokenizer_vocab = vocab if file_sha256(vocab) == BERT_VOCAB_SHA256 else None
        preset = os.environ.get(BENCHMARK_PRESET_ENV) or DEFAULT_PRESET
        build_benchmark_model(model_dir, vocab=tokenizer_vocab, variant=variant, preset=preset, overwrite=bool(missing),
                              progress=progress)
    return model_dir


def _manifest(model_dir: Path) -> dict:
    path = model_dir / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# The default model's directory name is the compression pipeline's (compression.benchmark_model.default_model_dir:
# variant, preset, the recipes' sparsity and layer count), and computing it imports torch. It is remembered in the
# models dir, keyed on a digest of the compression package's code and recipes, so that a run on a built model
# imports none of it, and any change there recomputes the name instead of finding a stale model.
DEFAULT_DIRS_MEMO = ".default-model-dirs.json"


def default_model_dir(variant: str) -> Path:
    """Where the default benchmark model of ``variant`` is (or will be built) for this models dir
    ($OBERT_MODELS_DIR) and preset ($OBERT_BENCHMARK_PRESET)."""
    root = Path(os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR)
    preset = os.environ.get(BENCHMARK_PRESET_ENV) or ""  # "": compression's default preset
    key = f"{variant}|{preset}|{compression_fingerprint()}"
    memo_path = root / DEFAULT_DIRS_MEMO
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo, dict) and isinstance(memo.get(key), str):
        return root / memo[key]
    from compression.architecture import DEFAULT_PRESET
    from compression.benchmark_model import default_model_dir as compression_default_dir

    model_dir = compression_default_dir(variant, root=root, preset=preset or DEFAULT_PRESET)
    try:  # best effort: without it the next run imports compression again
        root.mkdir(parents=True, exist_ok=True)
        scratch = memo_path.with_name(f"{memo_path.name}.{os.getpid()}")
        scratch.write_text(json.dumps({**(memo if isinstance(memo, dict) else {}), key: model_dir.name}, indent=1))
        os.replace(scratch, memo_path)  # whole, for a concurrent reader
    except OSError:
        pass
    return model_dir


def compression_fingerprint() -> str:
    """A digest of the compression package's Python code and YAML recipes (found without importing it)."""
    spec = importlib.util.find_spec("compression")
    if spec is None or not spec.submodule_search_locations:
        return "missing"
    package = Path(next(iter(spec.submodule_search_locations)))
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".yaml", ".yml")
                       and "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def resolve_run_model(spec: str | None, vocab: Path, cache_dir: Path, *, packed: bool = False,
                      backend: str = "", progress: bool = True) -> ModelInfo:
    """``--model`` resolved (see :func:`harness.models.resolve_model`), or the default benchmark model, built on first
    use with what ``backend`` (a named engine) runs."""
    from harness.models import resolve_model

    if spec is None:
        spec = str(benchmark_model_dir(DEFAULT_MODEL_VARIANT, vocab, packed=packed, qdq=backend == "openvino",
                                       progress=progress))
    return resolve_model(spec, download_dir=cache_dir / "models")


def engine_by_cpu(args: argparse.Namespace, scenarios: list[str]):
    """The engine settings with ``--backend auto`` resolved by the CPU (first, so that the default model is built
    for the engine), and the choice; settings errors come here, before the data and model work."""
    from harness.engine_choice import choose_engine
    from harness.engine_settings import EngineSettings

    engine = EngineSettings.from_args(args)
    choice = choose_engine(engine.backend)
    engine = dataclasses.replace(engine, backend=choice.chosen)
    for scenario in scenarios:
        engine.check(scenario)
    return engine, choice


def engine_for_model(args: argparse.Namespace, engine, choice, dataset, scenarios: list[str]):
    """The run's model (the default one built on first use, with a packed variant where one of ``scenarios`` runs
    packed rows), the engine choice fitted to it (an engine that cannot run it gives way), announced; returns
    (engine settings, choice, model)."""
    from harness.engine_choice import announce, fit_to_model

    model = resolve_run_model(args.model, dataset.vocab, Path(args.cache_dir),
                              packed=any(engine.packed_for(s) for s in scenarios), backend=engine.backend,
                              progress=not args.no_progress)
    choice = fit_to_model(choice, model, packing=any(engine.packed_for(s, model) for s in scenarios))
    engine = dataclasses.replace(engine, backend=choice.chosen)
    announce(choice)
    return engine, choice, model
