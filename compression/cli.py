"""``obert-compress``: command line of the compression pipeline.

Subcommands:

* ``build-benchmark-model``: an UNTRAINED model with the real oBERT-MobileBERT geometry, sparsity and
  precision, for speed measurements (see :mod:`compression.benchmark_model`).
* ``verify``: re-run the checks of :mod:`compression.verify` on a model directory.

Training subcommands (prune / quantize / export / smoke) plug into ``_SUBCOMMANDS`` the same way.
Errors that the user can fix are printed as one line (exit status 1), never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.errors import HarnessError

log = logging.getLogger("compression")

VARIANT_CHOICES = ("sparse-int8", "dense-fp32", "dense-fp32-24l")  # mirrors benchmark_model.VARIANTS
PRESET_CHOICES = ("mobilebert-uncased", "tiny")  # mirrors architecture.PRESETS


def _add_build_benchmark_model(subparsers) -> None:
    parser = subparsers.add_parser(
        "build-benchmark-model",
        help="build an UNTRAINED benchmark model (real geometry/sparsity/precision, random weights)",
        description="Build an untrained model directory for speed benchmarks: real oBERT-MobileBERT geometry, "
        "sparsity pattern and precision, random weights. Accuracy measured with it is meaningless.",
    )
    parser.add_argument("--variant", choices=VARIANT_CHOICES, default="sparse-int8",
                        help="sparse-int8: 14 layers, 50%% 4-block, INT8 (harness default); dense-fp32: 14 layers "
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


_SUBCOMMANDS: tuple[Callable, ...] = (_add_build_benchmark_model, _add_verify)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obert-compress", description="oBERT compression pipeline for MobileBERT")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show sparseml's and torch's progress logs")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not verbose:
        # sparseml logs every graph transform at INFO through its own handler, and resets its logger to
        # INFO when first imported: import it now, then quieten it.
        import sparseml.log  # noqa: F401

        for name in ("sparseml", "compression.sparseml"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():  # log lines print above progress bars instead of through them
            return args.handler(args)
    except HarnessError as exc:  # CompressionError and friends: one line, no traceback
        print(f"obert-compress: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
