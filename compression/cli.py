"""``obert-compress``: command line of the compression pipeline.

Subcommands:

* ``build-benchmark-model``: an UNTRAINED model with the real oBERT-MobileBERT geometry, sparsity and
  precision, for speed measurements (see :mod:`compression.benchmark_model`).
* ``verify``: re-run the checks of :mod:`compression.verify` on a model directory.

Training subcommands (:mod:`compression.steps`):

* ``prune``: layer dropping + gradual 4-block oBERT pruning with distillation (compression recipe).
* ``quantize``: INT8 quantization-aware training with masks held and distillation (quantization recipe).
* ``export``: ONNX (INT8 operators, and the QDQ form OpenVINO runs) into a model directory the harness runs, verified
  before publishing.
* ``smoke``: all of the above at toy scale on CPU (tiny MobileBERT, dev split, epochs scaled down).

The experiments built on this pipeline have their own command line (``python -m experiments``, :mod:`experiments`).

Errors that the user can fix are printed as one line (exit status 1), never as a traceback; a step whose
report has a failed check exits with status 2 (the artifacts are kept for inspection).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from cmdline.children import settle_tokenizers_parallelism
from cmdline.errors import UserError
from cmdline.signals import is_sigterm, raise_terminated
from compression.sparseml_logging import configure_sparseml_logging

log = logging.getLogger("compression")

VARIANT_CHOICES = ("sparse-int8", "sparse80-int8", "dense-fp32", "dense-fp32-24l")  # mirrors benchmark_model.VARIANTS
PRESET_CHOICES = ("mobilebert-uncased", "tiny")  # mirrors architecture.PRESETS


def _add_build_benchmark_model(subparsers) -> None:
    parser = subparsers.add_parser(
        "build-benchmark-model",
        help="build an UNTRAINED benchmark model (real geometry/sparsity/precision, random weights)",
        description="Build an untrained model directory for speed benchmarks: real oBERT-MobileBERT geometry, "
        "sparsity pattern and precision, random weights. Accuracy measured with it is meaningless.",
    )
    parser.add_argument("--variant", choices=VARIANT_CHOICES, default="sparse-int8",
                        help="sparse-int8: 14 layers, 50%% 4-block, INT8 (harness default); sparse80-int8: the same at 80%%; "
                        "dense-fp32: 14 layers "
                        "dense FP32; dense-fp32-24l: 24 layers dense FP32 (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="model directory to create (default: models/<name of the variant>)")
    parser.add_argument("--vocab", type=Path, required=True, help="BERT uncased WordPiece vocab.txt")
    parser.add_argument("--preset", choices=PRESET_CHOICES, default="mobilebert-uncased",
                        help="geometry preset; 'tiny' is for quick smoke tests (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="random initialisation seed (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")
    parser.add_argument("--skip-verify", action="store_true", help="do not verify before publishing (not recommended)")
    parser.set_defaults(handler=_run_build_benchmark_model)


def _run_build_benchmark_model(args: argparse.Namespace) -> int:
    from compression.benchmark_model import build_benchmark_model, default_model_dir

    out_dir = args.out_dir or default_model_dir(args.variant, preset=args.preset)
    path = build_benchmark_model(
        out_dir, vocab=args.vocab, variant=args.variant, seed=args.seed, preset=args.preset,
        overwrite=args.overwrite, verify=not args.skip_verify,
    )
    print(path)
    return 0


def _add_verify(subparsers) -> None:
    parser = subparsers.add_parser("verify", help="check a model directory (ONNX, INT8 ops, sparsity, runtimes)")
    parser.add_argument("model_dir", type=Path, help="directory holding model.onnx and manifest.json")
    parser.add_argument("--no-deepsparse", action="store_true", help="skip the DeepSparse run")
    parser.add_argument("--write", action="store_true",
                        help="replace the directory's verify.json (kept by default: the build-time one also compared "
                        "against the PyTorch model, which this command does not have)")
    parser.set_defaults(handler=_run_verify)


def _run_verify(args: argparse.Namespace) -> int:
    from compression.verify import verify_model_dir

    result = verify_model_dir(args.model_dir, check_deepsparse=not args.no_deepsparse, write=args.write)
    print(json.dumps({name: check["passed"] for name, check in result["checks"].items()}, indent=2))
    return 0 if result["passed"] else 1


# ----------------------------------------------------------------------------------------------
# Training pipeline

PIPELINE_PRESETS = ("full", "smoke")  # mirrors presets.PRESETS


def _default_out_dir(preset: str) -> Path:
    return Path("models") / f"compression-{preset}"


def _add_run_options(parser: argparse.ArgumentParser, default_preset: str = "full") -> None:
    group = parser.add_argument_group("run options (shared by prune/quantize/export/smoke)")
    group.add_argument("--preset", choices=PIPELINE_PRESETS, default=default_preset,
                       help="full: the published setup (GPU, SQuAD train, hub teacher); smoke: toy scale on CPU "
                       "(default: %(default)s)")
    group.add_argument("--out-dir", type=Path, default=None,
                       help="output directory of the pipeline (default: models/compression-<preset>)")
    group.add_argument("--data-dir", default=None,
                       help="directory with dev-v1.1.json and the BERT vocab (default: $OBERT_DATA_DIR)")
    group.add_argument("--train-data", default=None,
                       help="training data: a SQuAD v1.1-format JSON file, 'hf:squad' (Hugging Face, online) or "
                       "'dev-split' (train on 40 dev articles, evaluate on the 8 held out: NOT the standard "
                       "benchmark) (default: the preset's)")
    group.add_argument("--eval-data", type=Path, default=None,
                       help="SQuAD-format file to evaluate on (default: held-out split for dev-split, else the "
                       "data dir's dev-v1.1.json)")
    group.add_argument("--max-train-questions", type=int, default=-1,
                       help="use only this many training questions, spread over the data (default: the preset's)")
    group.add_argument("--max-eval-windows", type=int, default=-1,
                       help="evaluate on the first N windows only (default: the preset's; 0: all)")
    group.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the preset's, 16)")
    group.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's, 42)")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    group.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_config(args: argparse.Namespace):
    from compression.steps import RunConfig
    from compression.presets import get_pipeline_preset

    preset = get_pipeline_preset(args.preset)
    return RunConfig(
        preset=preset, out_dir=args.out_dir or _default_out_dir(preset.name),
        data_dir=Path(args.data_dir) if args.data_dir else None, train_data=args.train_data, eval_data=args.eval_data,
        device=args.device, threads=args.threads, progress=not args.no_progress, batch_size=args.batch_size,
        seed=args.seed, max_train_questions=None if args.max_train_questions == 0 else args.max_train_questions,
        max_eval_windows=None if args.max_eval_windows == 0 else args.max_eval_windows,
    )


def _report_status(report: dict) -> int:
    """Print the step's check summary; exit status 2 when a check failed."""
    print(json.dumps({"step": report.get("step"), "passed": report["passed"], "failed_checks": report["failed_checks"]},
                     indent=2))
    return 0 if report["passed"] else 2


def _add_prune(subparsers) -> None:
    parser = subparsers.add_parser(
        "prune", help="layer dropping + gradual 4-block oBERT pruning with distillation",
        description="Drop encoder layers (keep 0-13 of 24, as the recipe's LayerPruningModifier), then run the "
        "compression recipe: OBSPruningModifier 25%%->50%% 4-block, distillation from the dense teacher, frozen "
        "embeddings, the recipe's LR schedule. Writes <out>/prune/model and <out>/reports/prune.json.",
    )
    parser.add_argument("--model-name-or-path", default=None,
                        help="starting checkpoint: a local HF directory or a hub id (default: the preset's; smoke "
                        "builds and caches a tiny teacher)")
    parser.add_argument("--teacher", default=None, help="distillation teacher (default: the preset's, "
                        "neuralmagic/mobilebert-uncased-finetuned-squadv1 for full, so required for a student that is "
                        "not a MobileBERT)")
    parser.add_argument("--keep-layers", type=int, default=None,
                        help="encoder layers to keep (default: from the recipe, or the geometry preset)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/prune/checkpoint")
    parser.add_argument("--stop-after-steps", type=int, default=None,
                        help="stop (with a checkpoint) after this many optimizer steps; continue with --resume")
    _add_run_options(parser)
    parser.set_defaults(handler=_run_prune)


def _student_model_type(spec: str) -> str | None:
    """``config.model_type`` of a checkpoint (a local directory's config.json, else the hub's config), or None when
    it cannot be read here (loading the model then gives the error)."""
    config_file = Path(spec) / "config.json"
    try:
        if config_file.is_file():
            return json.loads(config_file.read_text()).get("model_type")
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(spec).model_type
    except Exception:  # noqa: BLE001 - unreadable here: the step's own loading reports it
        return None


def _require_teacher(args: argparse.Namespace, student: str | None, suggestion: str | None = None) -> None:
    """A preset's default teacher is MobileBERT (full: the Neural Magic SQuAD model): a student of another family
    must name its own teacher instead of being distilled from MobileBERT's logits without a word."""
    from compression.errors import CompressionError
    from compression.presets import get_pipeline_preset

    preset = get_pipeline_preset(args.preset)
    if args.teacher is not None or preset.teacher is None or student is None:
        return
    model_type = _student_model_type(student)
    if model_type in (None, "mobilebert"):
        return
    raise CompressionError(
        f"{args.command}: the student {student} is a {model_type} model, and the {preset.name} preset's default teacher "
        f"is {preset.teacher}, a MobileBERT; pass --teacher with your dense fine-tuned {model_type} question-answering "
        f"model (e.g. --teacher {suggestion or student})")


def _run_prune(args: argparse.Namespace) -> int:
    from compression.steps import run_prune

    _require_teacher(args, args.model_name_or_path)
    report = run_prune(_run_config(args), model_spec=args.model_name_or_path, teacher_spec=args.teacher,
                       keep_layers=args.keep_layers, resume=args.resume, stop_after_steps=args.stop_after_steps)
    return _report_status(report)


def _add_quantize(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize", help="INT8 quantization-aware training (masks held) with distillation",
        description="Run the quantization recipe on the pruned model: QAT of embeddings/encoder/qa_outputs, "
        "masks held by ConstantPruningModifier, observers frozen after the recipe's epoch, distillation. "
        "Writes <out>/quantize/model and <out>/reports/quantize.json.",
    )
    parser.add_argument("--model-name-or-path", default=None, help="pruned checkpoint (default: <out>/prune/model)")
    parser.add_argument("--teacher", default=None, help="distillation teacher (default: the preset's; required for "
                        "a student that is not a MobileBERT with --preset full)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/quantize/checkpoint")
    parser.add_argument("--stop-after-steps", type=int, default=None,
                        help="stop (with a checkpoint) after this many optimizer steps; continue with --resume")
    _add_run_options(parser)
    parser.set_defaults(handler=_run_quantize)


def _run_quantize(args: argparse.Namespace) -> int:
    from compression.steps import run_quantize

    pruned = Path(args.model_name_or_path or (args.out_dir or _default_out_dir(args.preset)) / "prune" / "model")
    try:  # suggest the teacher the prune step distilled from
        prune_teacher = json.loads((pruned / "compression_info.json").read_text()).get("teacher")
    except (OSError, ValueError):
        prune_teacher = None
    _require_teacher(args, str(pruned) if pruned.exists() else None, prune_teacher)
    report = run_quantize(_run_config(args), model_spec=args.model_name_or_path, teacher_spec=args.teacher,
                          resume=args.resume, stop_after_steps=args.stop_after_steps)
    return _report_status(report)


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export the trained model to an ONNX model directory (INT8 ops), verified",
        description="Export <out>/quantize/model (or --source prune) at sequence length 384 with sparseml's "
        "exporter, converting QAT to INT8 operators (model.onnx) and to the QDQ form OpenVINO runs (model-qdq.onnx); "
        "the directory gets config, tokenizer, manifest and verify.json (INT8 matmuls, sparsity, ONNX Runtime vs "
        "PyTorch, DeepSparse and OpenVINO vs ONNX Runtime, OpenVINO's INT8 matmuls).",
    )
    parser.add_argument("--source", choices=("quantize", "prune"), default="quantize",
                        help="which step's model to export (default: %(default)s)")
    parser.add_argument("--model-dir", type=Path, default=None, help="model directory to write (default: <out>/model)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    parser.add_argument("--no-deepsparse", action="store_true", help="skip the DeepSparse check")
    parser.add_argument("--no-eval", action="store_true", help="skip the ONNX Runtime F1/EM evaluation (and so the check of the "
                        "export's F1 against the PyTorch model's)")
    _add_run_options(parser)
    parser.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from compression.steps import run_export

    report = run_export(_run_config(args), source=args.source, model_dir=args.model_dir, overwrite=args.overwrite,
                        check_deepsparse=not args.no_deepsparse, evaluate=not args.no_eval)
    print(report["model_dir"])
    return _report_status(report)


def _add_smoke(subparsers) -> None:
    parser = subparsers.add_parser(
        "smoke", help="the whole pipeline at toy scale on CPU (a few minutes)",
        description="teacher (tiny, fine-tuned from scratch, cached) -> prune -> quantize -> export with the smoke "
        "preset: the same recipes with epochs scaled down, every modifier active, on a slice of the dev split "
        "(NOT the standard benchmark). Writes reports/smoke.json with timings.",
    )
    _add_run_options(parser, default_preset="smoke")
    parser.add_argument("--no-deepsparse", action="store_true", help="skip the DeepSparse check at export")
    parser.set_defaults(handler=_run_smoke)


def _run_smoke(args: argparse.Namespace) -> int:
    from compression.steps import run_smoke

    summary = run_smoke(_run_config(args), check_deepsparse=not args.no_deepsparse)
    print(json.dumps({k: summary[k] for k in ("out_dir", "model_dir", "passed", "failed", "timings_s")}, indent=2))
    return 0 if summary["passed"] else 2


_SUBCOMMANDS: tuple[Callable, ...] = (
    _add_build_benchmark_model, _add_verify, _add_prune, _add_quantize, _add_export, _add_smoke,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obert-compress", description="oBERT compression pipeline for MobileBERT")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show sparseml's and torch's progress logs")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def _configure_logging(verbose: bool) -> None:
    settle_tokenizers_parallelism()  # before anything tokenizes or forks
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not verbose:
        # sparseml imports pkg_resources, which warns about its own deprecation on every start (before the
        # import below); transformers warns that a QA head is newly initialized, which is what fine-tuning an
        # encoder means (the teacher step says so itself)
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import transformers

        transformers.logging.set_verbosity_error()
    configure_sparseml_logging(verbose)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand's ``handler`` as every compression command runs (``obert-compress``,
    ``python -m experiments``): logging set up, SIGTERM raised as :class:`cmdline.signals.Terminated`, a
    :class:`UserError` printed as one line (exit 1), a stop said in one line (exit 128 + the signal)."""
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    previous_sigterm = None
    if threading.current_thread() is threading.main_thread():  # handlers can only be set there
        previous_sigterm = signal.signal(signal.SIGTERM, raise_terminated)  # training steps set their own
    try:
        return _run(args, parser.prog)
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _run(args: argparse.Namespace, prog: str) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():  # log lines print above progress bars instead of through them
            return args.handler(args)
    except UserError as exc:  # CompressionError and friends: one line, no traceback
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        from compression.train_stop import TrainingStopped

        if isinstance(exc, TrainingStopped):
            status = 128 + exc.signum
            where = (f" after step {exc.step}, which is checkpointed; the same command resumes there (prune/quantize: "
                     "with --resume)")
        else:
            status = 128 + (signal.SIGTERM if is_sigterm(exc) else signal.SIGINT)
            where = " (what finished before is kept)"
        print(f"{prog}: stopped{where}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
