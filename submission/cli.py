"""Command line of the MLPerf submission packaging: ``obert-submission`` / ``python -m submission``.

Assembles open/<submitter>/... for bert-99: performance, accuracy and TEST01 runs per scenario (reusing --from-runs
where they match), TEST01 verification, system description, documentation, then the local validator
(docs/submission.md). Refuses a tree with errors unless they are accepted with an --allow-* flag (exit status 4).
It runs like ``obert-harness``: same engine and data options, logging (-v), one-line errors and Ctrl-C/SIGTERM
handling.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.engine_settings import EngineSettings
from harness.run_inputs import add_data_args
from harness.rundir import DEFAULT_RUNS_DIR
from harness.engine_settings import QUICK
from harness.sysinfo import REPO_ROOT
from submission import rules
from submission.layout import LAYOUTS
from submission.system import DEFAULT_TEMPLATE

EXIT_REFUSED = 4
DEFAULT_SUBMISSIONS_DIR = REPO_ROOT / "submissions"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m submission", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--submitter", help="organization name (default: 'submitter' in the system template)")
    p.add_argument("--division", default="open", choices=list(rules.DIVISIONS),
                   help="open (default; required for a compressed model) or closed")
    p.add_argument("--system-template", default=str(DEFAULT_TEMPLATE),
                   help="user-editable system description fields (default: submission/system_template.json)")
    p.add_argument("--scenarios", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   help="comma-separated (default: Offline,SingleStream, plus Server in the open division when "
                   "--from-runs has a matching Server performance run). The closed division needs exactly the "
                   "edge suite (Offline,SingleStream); the open division accepts any non-empty set")
    p.add_argument("--from-runs", action="append", default=[], metavar="DIR",
                   help="run directory, or parent of run directories, to reuse (repeatable); only complete runs "
                   "with matching model, data, engine and LoadGen settings are used")
    p.add_argument("--output", help="new directory for the tree (default: submissions/<time>_<submitter>_<division>); "
                   "an existing one is refused")
    p.add_argument("--layout", default="v6", choices=list(LAYOUTS),
                   help="v6 (default): current checker, measurements and TEST01 inside results/; v5: older "
                   "measurements/, compliance/, code/ folders")
    p.add_argument("--quick", action="store_true",
                   help=f"quick runs (first ~{QUICK.count} features; Offline answers each once, the latency scenarios "
                   f"run {QUICK.min_duration_ms / 1000:.0f} s at least) for trying the tool: the package is marked NOT COMPLIANT")
    p.add_argument("--allow-below-target", action="store_true",
                   help="package even though F1 is below the bert-99 target (recorded in the notes; in the open "
                   "division the official checker would only warn, our validator refuses by default)")
    p.add_argument("--allow-invalid", action="store_true",
                   help="package even with INVALID performance runs, LoadGen errors, failed TEST01 or non-compliant "
                   "settings (recorded in the notes)")
    p.add_argument("--allow-missing", action="store_true",
                   help="package even with missing files, or scenarios the closed division requires")
    p.add_argument("--no-compliance", action="store_true",
                   help="open division only: skip TEST01 (about 11 minutes per scenario; the official checker does "
                   "not require it in open). Recorded in the notes. Refused with --division closed")
    p.add_argument("--official-checker", metavar="DIR",
                   help=f"a local clone of mlcommons/inference: after packaging, run its tools/submission checker "
                   f"(round {rules.CHECKER_VERSION}) on the tree, keep its log in documentation/ and print its verdict "
                   "beside ours (it never changes the tree's fate). Never downloaded by the harness")
    p.add_argument("--validate", metavar="TREE",
                   help="only validate an existing submission tree (with --layout, --quick, --no-compliance, "
                   "--official-checker) and exit")
    p.add_argument("--model", default=None,
                   help="as for `python -m harness run` (default: the untrained benchmark model in ./models)")
    EngineSettings.add_flags(p, note=" (as for `python -m harness run`; reused runs must have been made with the same values)")
    add_data_args(p)
    p.add_argument("--mlperf-conf", default=str(REPO_ROOT / "mlperf.conf"))
    p.add_argument("--user-conf", default=str(REPO_ROOT / "user.conf"))
    p.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR), help="where new runs go (default ./runs)")
    return p


def cmd_submission(args: argparse.Namespace, command_line: str = "python -m submission") -> int:
    """Run what is missing, verify TEST01, package and validate (or only validate, with --validate); the exit
    status is EXIT_REFUSED when the validator refuses the tree. ``command_line`` is recorded in the package."""
    from harness.run_inputs import engine_by_cpu, engine_for_model, load_dataset_and_features
    from harness.rundir import check_runs_root
    from submission.runs import RunContext
    from submission.system import load_template
    from submission.workflow import make_submission, preflight, print_result

    if args.validate:
        return _validate_only(args)

    allow = set()
    if args.allow_below_target:
        allow.add("accuracy")
    if args.allow_invalid:
        allow |= {"invalid", "noncompliant"}
    if args.allow_missing:
        allow.add("missing")
    # refusals known from the request alone come before the data is loaded and before any run
    preflight(division=args.division, scenarios=args.scenarios,
              system_type=load_template(Path(args.system_template)).get("system_type"),
              no_compliance=args.no_compliance, official_checker=args.official_checker, allow=frozenset(allow))

    scenarios = list(args.scenarios or ("Offline", "SingleStream"))  # the default set includes SingleStream
    # settings errors (e.g. --packing with a latency scenario) are refused before any run
    engine, choice = engine_by_cpu(args, scenarios)
    check_runs_root(Path(args.runs_dir))  # a file in the way: one line before the data loads, not at the first run
    dataset, features = load_dataset_and_features(args, count=QUICK.count if args.quick else None)
    engine, choice, model = engine_for_model(args, engine, choice, dataset, scenarios)
    ctx = RunContext(model=model, features=features, dataset=dataset, engine=engine,
                     mlperf_conf=Path(args.mlperf_conf), user_conf=Path(args.user_conf), runs_root=Path(args.runs_dir),
                     quick=args.quick, progress=not args.no_progress,
                     feature_cache_dir=Path(args.cache_dir) / "features", backend_choice=choice.as_dict())
    submitter_label = args.submitter or "submitter"
    output = Path(args.output) if args.output else (
        DEFAULT_SUBMISSIONS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}_{submitter_label}_{args.division}")
    result = make_submission(
        ctx, output=output, division=args.division, submitter=args.submitter,
        system_template=Path(args.system_template), scenarios=args.scenarios,
        from_runs=[Path(p) for p in args.from_runs], layout=args.layout, allow=frozenset(allow),
        command_line=command_line, no_compliance=args.no_compliance,
        official_checker=Path(args.official_checker) if args.official_checker else None,
    )
    print_result(result)
    return 0 if result.accepted else EXIT_REFUSED


def _validate_only(args) -> int:
    """``--validate TREE``: the local validator, then the official checker if asked. The tree is left as it is:
    the checker's log goes beside it (``<tree>.official_checker-<time>.log``)."""
    from submission.official import locate_checker, run_official_checker
    from submission.findings import summarize
    from submission.validate import validate_tree

    tree = Path(args.validate)
    tools = locate_checker(Path(args.official_checker)) if args.official_checker else None
    findings = validate_tree(tree, quick=args.quick, layout=args.layout, test01_in_open=not args.no_compliance)
    print(summarize(findings))
    if tools is not None:
        organizations = [org for division in tree.iterdir() if division.is_dir() for org in division.iterdir()
                         if org.is_dir()]
        submitter = args.submitter or (organizations[0].name if len(organizations) == 1 else None)
        if submitter is None:
            print("official checker: not run (pass --submitter ORG: the tree holds several organizations)")
        else:
            log_path = tree.with_name(f"{tree.name}.official_checker-{time.strftime('%Y%m%d-%H%M%S')}.log")
            print(run_official_checker(tools, tree, submitter, log_path).summary())
    return EXIT_REFUSED if any(f.level == "error" for f in findings) else 0


def main(argv: Sequence[str] | None = None) -> int:
    from harness.cli import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    command_line = shlex.join(["python", "-m", "submission", *argv])  # recorded in the package's READMEs
    return run_command(build_parser().parse_args(argv), lambda args: cmd_submission(args, command_line))
