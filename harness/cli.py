"""Command line of the harness: ``obert-harness`` / ``python -m harness``.

Sub-commands:
  run       one scenario in performance and/or accuracy mode under LoadGen
  find-target  this machine's Offline, Server and SingleStream targets, found by runs, as a user.conf
  accuracy  re-score the accuracy log of an earlier run
  prepare   resolve the dataset and build the feature cache (and, with --download, fetch SQuAD dev)

The applications of the harness have their own command lines: the benchmark suite ``python -m benchmarks``, the
MLPerf submission packaging ``python -m submission``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError, RunStopped
from harness.interrupts import describe as describe_interrupt
from harness.interrupts import exit_now, exit_status, install_sigterm_handler, install_stop_notice
from harness.engine_settings import EngineSettings
from harness.run_inputs import add_data_args
from harness.rundir import DEFAULT_RUNS_DIR
from harness.logging_config import configure_logging
from harness.options import add_flags
from harness.engine_settings import QUICK
from harness.loadgen_settings import LoadGenOverrides
from harness.sysinfo import REPO_ROOT

# The shared pieces live below this module (flags: on the option classes, e.g. harness.engine_settings; dataset and
# model: harness.run_inputs; logging: harness.logging_config; the commands: harness.commands), so that every import
# inside harness/ points one way (tests/test_layout.py); this module only parses and dispatches.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obert-harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario under LoadGen")
    run.add_argument("--scenario", default="Offline", choices=["Offline", "Server", "SingleStream"])
    run.add_argument("--mode", default="performance", choices=["performance", "accuracy", "both"],
                     help="'both' runs performance, then accuracy, each in its own run directory")
    # Spellings of the MLPerf reference run.py, Neural Magic's harness and the MLC automation are accepted
    # as aliases (docs/options-map.md), so their users' commands work unchanged.
    run.add_argument("--accuracy", dest="mode", action="store_const", const="accuracy",
                     help="same as --mode accuracy (the reference run.py's flag)")
    run.add_argument("--model", "--model-path", "--model_path", dest="model", default=None,
                     help="model directory, .onnx file, Hugging Face id or SparseZoo 'zoo:' stub (default: the "
                     "untrained oBERT-MobileBERT benchmark model in ./models, built on first use)")
    add_data_args(run)
    run.add_argument("--quick", action="store_true",
                     help=f"smoke run: first ~{QUICK.count} features (Offline: each once; the latency scenarios: "
                     f"{QUICK.min_duration_ms / 1000:.0f} s minimum), buckets {','.join(map(str, QUICK.buckets))} (fewer engines to compile); not a "
                     "compliant run")
    loadgen = run.add_argument_group("LoadGen overrides (any of these makes the run non-compliant)")
    loadgen.add_argument("--count", "--max-examples", "--max_examples", dest="count", type=int,
                         help="use only the first N features (accuracy is scored over the questions they cover); "
                         "--max_examples: the reference run.py's name, which also counts features")
    add_flags(loadgen, LoadGenOverrides)
    loadgen.add_argument("--mlperf-conf", "--mlperf_conf", dest="mlperf_conf", default=str(REPO_ROOT / "mlperf.conf"))
    loadgen.add_argument("--user-conf", "--user_conf", dest="user_conf", default=str(REPO_ROOT / "user.conf"))
    loadgen.add_argument("--audit-conf", "--audit_conf", dest="audit_conf", metavar="PATH|TEST01",
                         help="a compliance audit.config for a performance run (LoadGen reads it at the start); "
                         "TEST01: the bert TEST01 one that `python -m submission` uses (accuracy-log sampling in "
                         "performance mode; check it with its verification). Not a result to report on its own")
    EngineSettings.add_flags(run)
    run.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR), help="parent of the run directories")
    run.add_argument("--abort-when-invalid", action="store_true",
                     help="Server: stop as soon as more samples have missed the latency bound than p99 allows over "
                     "the whole run (it can no longer be VALID): the rest is answered empty, the run is kept, marked "
                     "INVALID with the reason, exit status 5. Without it the run goes on and a warning says so")
    run.add_argument("--inject-fault-after", type=int, help=argparse.SUPPRESS)  # tests: fail after N batches
    run.add_argument("--inject-delay-ms", type=float, help=argparse.SUPPRESS)  # tests: a slow engine
    run.add_argument("--fault-grace-s", type=float, default=10.0, help=argparse.SUPPRESS)

    find = sub.add_parser("find-target", help="find this machine's LoadGen targets and write them as a user.conf",
                          description="Offline: one pass over every feature; SingleStream: a short run; Server: short "
                          "runs bisect the highest load LoadGen calls VALID (from the Offline speed down), then "
                          "full-length runs confirm it (lower where they do not hold). Writes user.conf, "
                          "find_target.md/.json and a plot of p99 against offered load (docs/running.md, Finding this "
                          "machine's targets).")
    find.add_argument("--scenario", nargs="+", choices=["Offline", "Server", "SingleStream"], default=None,
                      help="what to search (default: all three; Server needs Offline's speed or --upper-qps)")
    find.add_argument("--model", "--model-path", dest="model", default=None,
                      help="model directory or .onnx file (default: the benchmark model, as `run`)")
    add_data_args(find)
    find.add_argument("--count", type=int, default=None, help="only the first N features (not a real target)")
    find.add_argument("--probe-duration-ms", type=int, default=30000,
                      help="length of each short Server run and of the SingleStream run (default %(default)s)")
    find.add_argument("--tolerance", type=float, default=0.05,
                      help="Server: stop when the highest VALID and lowest INVALID loads are this share apart "
                      "(default %(default)s)")
    find.add_argument("--upper-qps", type=float, default=None,
                      help="Server: the load the search starts below (default: the Offline samples/s found)")
    find.add_argument("--no-confirm", action="store_true",
                      help="Server: skip the full-length (600 s) confirmation runs")
    find.add_argument("--output", default=None,
                      help="the user.conf to write (default: <runs dir>/find-target-<time>/user.conf); an existing "
                      "file, such as the repository's user.conf, only with --overwrite")
    find.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    find.add_argument("--mlperf-conf", default=str(REPO_ROOT / "mlperf.conf"))
    find.add_argument("--user-conf", default=str(REPO_ROOT / "user.conf"),
                      help="the conf the runs read their other settings from (default: the repository's)")
    find.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR), help="parent of the search's run directories")
    EngineSettings.add_flags(find)

    acc = sub.add_parser("accuracy", help="score the accuracy log of a run directory")
    acc.add_argument("run_dir", help="an accuracy-mode run directory holding mlperf_log_accuracy.json and run.json; an "
                     "earlier accuracy.txt / predictions.json there is kept and the new score goes to rescored-<time>/")
    acc.add_argument("--partial", action="store_true",
                     help="score a log that lacks responses for some features over the questions it covers (refused "
                     "otherwise; not a result to report)")
    add_data_args(acc)

    prep = sub.add_parser("prepare", help="resolve the dataset and build the feature cache")
    add_data_args(prep)
    prep.add_argument("--download", action="store_true",
                      help="download SQuAD v1.1 dev (md5-checked) and the bert-base-uncased vocab (sha256-checked) into "
                      "--data-dir, $OBERT_DATA_DIR or the default data dir <cache dir>/data (needs internet)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv), _dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    from harness import commands

    return getattr(commands, f"cmd_{args.command.replace('-', '_')}")(args)


def run_command(args: argparse.Namespace, command: Callable[[argparse.Namespace], int]) -> int:
    """Run ``command(args)`` as every command line built on the harness does (``obert-harness``,
    ``python -m benchmarks``, ``python -m submission``): logging (``args.verbose``), a :class:`HarnessError` printed
    as one line with its exit status, Ctrl-C and SIGTERM ending the command cleanly (exit 130 / 143)."""
    configure_logging(args.verbose)
    install_sigterm_handler()
    install_stop_notice()
    try:
        return command(args)
    except RunStopped as exc:  # --abort-when-invalid: the summary line says why
        print(exc)
        return exc.exit_status
    except HarnessError as exc:  # BackendFault exits 3, DiskFull 6, the others 1
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:  # a full device outside a run (a run turns it into DiskFull and records it)
        from harness.rundir import disk_full_error, is_no_space

        if not is_no_space(exc):
            raise
        error = disk_full_error(exc, Path.cwd())
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM; a run in progress is already marked
        print(describe_interrupt(interrupt), file=sys.stderr)
        exit_now(exit_status(interrupt))
    return 2


if __name__ == "__main__":
    sys.exit(main())
