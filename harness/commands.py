"""The sub-commands ``run``, ``find-target``, ``accuracy`` and ``prepare``: each takes the parsed arguments of
:mod:`harness.cli` and returns the exit status."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from functools import partial
from pathlib import Path

from harness.errors import ConfigError
from harness.run_inputs import (
    DEFAULT_DATA_SUBDIR,
    engine_by_cpu,
    engine_for_model,
    load_dataset_and_features,
)
from harness.engine_settings import QUICK, quick_overrides

log = logging.getLogger("harness")


def cmd_run(args: argparse.Namespace) -> int:
    from harness.backends import create_backend, import_engine
    from harness.options import from_args
    from harness.runner import RunRequest, check_request, execute_run
    from harness.loadgen_settings import LoadGenOverrides, conf_test_settings, issue_plan, plan_note

    from harness.loadgen_logs import expected_bytes
    from harness.rundir import check_free_space, check_runs_root

    count = args.count if args.count is not None else (QUICK.count if args.quick else None)
    if count is not None and count < 1:
        raise ConfigError(f"--count must be >= 1, got {count}")
    check_runs_root(Path(args.runs_dir))  # before minutes of start-up, not when the first run directory is made
    modes = ["performance", "accuracy"] if args.mode == "both" else [args.mode]
    audit_config = _audit_config(args.audit_conf, modes, Path(args.cache_dir))
    # The conf files are read once for every test of this command (see harness.loadgen_settings.ConfSettings).
    conf = conf_test_settings(args.scenario, modes[0], mlperf_conf=Path(args.mlperf_conf),
                              user_conf=Path(args.user_conf))
    engine, choice = engine_by_cpu(args, [args.scenario])
    dataset, features = load_dataset_and_features(args, count=count)
    check_free_space(Path(args.runs_dir), sum(expected_bytes(mode, len(features), features.params.max_seq_length)
                                              for mode in modes), f"{' and '.join(modes)} runs of {len(features)} features")
    engine, choice, model = engine_for_model(args, engine, choice, dataset, [args.scenario])
    backend_options, sut_options = engine.for_scenario(args.scenario, features.params.max_seq_length, model)
    preset = quick_overrides(args.scenario, len(features)) if args.quick else {}
    overrides = LoadGenOverrides(**{**preset, **from_args(LoadGenOverrides, args).given()})
    requests = [RunRequest(
        scenario=args.scenario, mode=mode, backend=engine.backend, model=model, features=features, dataset=dataset,
        backend_options=backend_options, sut_options=sut_options, mlperf_conf=Path(args.mlperf_conf),
        user_conf=Path(args.user_conf), runs_root=Path(args.runs_dir), overrides=overrides,
        progress=not args.no_progress, backend_wrapper=_test_wrapper(args), fault_grace_s=args.fault_grace_s,
        abort_when_invalid=args.abort_when_invalid, requested_count=args.count, audit_config=audit_config,
        backend_choice=choice.as_dict()) for mode in modes]
    vocab_check = check_request(requests[0])  # the tests differ only in mode
    if "performance" in modes and overrides.given():  # said before the engines compile, not 20 minutes later
        settings, _ = conf.for_run(len(features), overrides, mode="performance")
        note = plan_note(args.scenario, issue_plan(args.scenario, settings), len(features), Path(args.user_conf))
        if note:
            log.warning("%s", note)

    # One engine serves every test of the command: compiling the length-bucket engines is most of a short
    # run's time. Both tests share one reading of the conf files, so neither log carries LoadGen's
    # "Multiple conf files are used" error.
    if "accuracy" in modes:  # scoring needs transformers' basic tokenizer (~4 s to import): load it meanwhile
        from squad.scoring import warm_up as warm_up_scoring

        import_engine(engine.backend, backend_options)  # first: the two import trees share packages
        threading.Thread(target=warm_up_scoring, name="warm-up-scoring", daemon=True).start()
    backend = create_backend(engine.backend, model, backend_options, progress=not args.no_progress)
    records = []
    try:
        for request in requests:
            records.append(execute_run(request, backend=backend, conf_settings=conf, vocab_check=vocab_check))
    finally:
        backend.close()
    for note in dict.fromkeys(note for record in records for note in record["notes"]):
        print(f"NOTE: {note}")
    if audit_config is not None:  # its accuracy log is a sample for the audit, not a score
        print(f"NOTE: compliance audit run with {audit_config} (copied into the run directory): verify it against "
              "an accuracy run and a performance run of the same settings; not a result to report on its own")
    for record in records:
        print(record["summary"])
    return 0


def cmd_find_target(args: argparse.Namespace) -> int:
    from harness.targets import find_targets

    return find_targets(args)


def _audit_config(spec: str | None, modes: list[str], cache_dir: Path) -> Path | None:
    """``--audit-conf``: the audit.config file to run with, or None. It travels like the submission flow's TEST01
    run (``RunRequest.audit_config``: the runner copies it into the run directory and names that copy to LoadGen,
    so a stray audit.config in the working directory never counts); ``TEST01`` is written by the same
    :func:`harness.compliance_audit.write_audit_config`."""
    if spec is None:
        return None
    if modes != ["performance"]:
        raise ConfigError("--audit-conf: a compliance audit runs in performance mode (its audit.config sets LoadGen's "
                          f"mode itself); run it with --mode performance, not {' and '.join(modes)}")
    if spec.upper() == "TEST01":
        from harness.compliance_audit import write_audit_config

        return write_audit_config(cache_dir / "audit" / "TEST01" / "audit.config")  # same content every time
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--audit-conf {spec}: no such file (a LoadGen audit.config, or TEST01 for bert's)")
    return path


def _test_wrapper(args: argparse.Namespace):
    """The backend wrapper of the hidden test flags (fault injection, a slowed engine), or None."""
    if args.inject_fault_after is not None:
        from harness.backends.fault import FaultInjectingBackend

        return partial(FaultInjectingBackend, fail_after=args.inject_fault_after)  # picklable
    if args.inject_delay_ms is not None:
        from harness.backends.fault import SlowBackend

        return partial(SlowBackend, delay_s=args.inject_delay_ms / 1000.0)
    return None


def cmd_accuracy(args: argparse.Namespace) -> int:
    import json
    import shutil
    import time

    from harness.accuracy import SCORE_FILES, evaluate_accuracy_log
    from harness.loadgen_logs import ACCURACY_LOG
    from harness.rundir import RUN_JSON, claim_dir

    run_dir = Path(args.run_dir)
    record_path = run_dir / RUN_JSON
    if not record_path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no {RUN_JSON})")
    record = json.loads(record_path.read_text())
    if record.get("mode") != "accuracy":
        raise ConfigError(f"{run_dir}: a {record.get('mode')}-mode run; LoadGen logs the responses to score only in "
                          "accuracy mode (run with --mode accuracy or both)")
    dataset, features = load_dataset_and_features(args, count=record["qsl"]["features"])
    if features.fingerprint.split(":")[0] != str(record["qsl"]["fingerprint"]).split(":")[0]:
        raise ConfigError(
            f"{run_dir}: the run used features {record['qsl']['fingerprint']}, but --data-dir gives "
            f"{features.fingerprint}; point --data-dir at the dataset the run used"
        )
    # An earlier score stays where it is; a new one goes beside it, in a directory of its own even when two
    # rescorings start in the same second.
    earlier = [name for name in SCORE_FILES if (run_dir / name).exists()]
    out_dir = claim_dir(run_dir, f"rescored-{time.strftime('%Y%m%d-%H%M%S')}") if earlier else run_dir
    try:
        result = evaluate_accuracy_log(run_dir / ACCURACY_LOG, features, out_dir, complete=True,
                                       partial=args.partial)
    except BaseException:
        if out_dir != run_dir:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    print(json.dumps({"exact_match": result["exact_match"], "f1": result["f1"]}))
    if result["partial_log"]:
        print(f"NOTE: partial log: {result['examples_scored']} questions scored, those with responses only "
              f"(--partial); not a result to report, so it is written as {result['files'][0]}", file=sys.stderr)
    print(f"written to {out_dir} ({', '.join(result['files'])})" +
          (f"; the earlier {' and '.join(earlier)} kept" if earlier else ""), file=sys.stderr)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from squad.data import DEFAULT_DATA_ENV, fetch_official_data

    if args.download:
        target = Path(args.data_dir or os.environ.get(DEFAULT_DATA_ENV) or Path(args.cache_dir) / DEFAULT_DATA_SUBDIR)
        if target.exists() and not target.is_dir():
            raise ConfigError(f"--download: {target} is not a directory")
        target.mkdir(parents=True, exist_ok=True)
        fetch_official_data(target, progress=not args.no_progress)
        if not (args.data_dir or os.environ.get(DEFAULT_DATA_ENV)):
            print(f"downloaded into the default data dir {target}; commands use it when no --data-dir is given")
    dataset, features = load_dataset_and_features(args)
    print(f"{len(features)} features from {dataset.dev_json} ({dataset.source}); cache key {features.fingerprint}")
    return 0
