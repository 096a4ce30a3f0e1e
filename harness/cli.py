"""Command line of the harness: ``obert-harness`` / ``python -m harness``.

Sub-commands:
  run       one scenario in performance and/or accuracy mode under LoadGen
  accuracy  re-score the accuracy log of an earlier run
  prepare   resolve the dataset and build the feature cache (and, with --download, fetch SQuAD dev)
  bench     Offline samples/s of DeepSparse vs ONNX Runtime on the compressed and dense models, and the
            harness overhead against a bare engine loop (figures, not a test)
  submission  package an MLPerf submission tree for bert-99 (runs what is missing, TEST01, validator)
"""

from __future__ import annotations

import argparse
from functools import partial
import logging
import os
import sys
import threading
import warnings
from pathlib import Path

from harness.errors import ConfigError, HarnessError, RunStopped
from harness.interrupts import describe as describe_interrupt
from harness.interrupts import exit_now, exit_status, install_sigterm_handler, install_stop_notice
from harness.backends import BACKENDS
from harness.backends.base import CLUSTERS, RAY_CONNECT_TIMEOUT_S
from harness.backends.openvino_backend import PRECISIONS
from harness.bucketing import DEFAULT_BUCKETS
from harness.run_options import DEFAULT_BATCH_SIZE, DEFAULT_STREAMS, QUICK, EngineSettings, quick_overrides
from harness.scenarios import SERVER_POLICIES
from harness.sysinfo import REPO_ROOT

log = logging.getLogger("harness")

DEFAULT_MODELS_DIR = REPO_ROOT / "models"
MODELS_DIR_ENV = "OBERT_MODELS_DIR"  # where the default benchmark models are built and kept
# The geometry of the default model built on first use; tests set "tiny" to exercise the same path quickly.
BENCHMARK_PRESET_ENV = "OBERT_BENCHMARK_PRESET"
DEFAULT_MODEL_VARIANT = "sparse-int8"
DEFAULT_RUNS_DIR = REPO_ROOT / "runs"
DEFAULT_CACHE_ENV = "OBERT_CACHE_DIR"
DEFAULT_DATA_SUBDIR = "data"  # the default data dir, under the cache dir: first-run downloads go there


def _add_data_args(parser: argparse.ArgumentParser) -> None:
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


def add_engine_args(parser: argparse.ArgumentParser, note: str = "") -> None:
    """Backend and engine flags, shared by every command that starts runs (see EngineSettings)."""
    parser.add_argument("--backend", default="deepsparse", choices=BACKENDS,
                        help="inference engine (default deepsparse; README, Which engine)")
    engine = parser.add_argument_group("engine" + note)
    engine.add_argument("--batch-size", type=int,
                        help="engine batch size (default: " +
                        ", ".join(f"{scenario} {n}" for scenario, n in DEFAULT_BATCH_SIZE.items()) + ")")
    engine.add_argument("--num-streams", type=int,
                        help="DeepSparse/OpenVINO streams (and SUT worker threads) (default: " +
                        ", ".join(f"{scenario} {n}" for scenario, n in DEFAULT_STREAMS.items()) + ")")
    engine.add_argument("--num-cores", type=int, help="DeepSparse cores / OpenVINO threads (default: all)")
    engine.add_argument("--scheduler", default=None,
                        help="DeepSparse scheduler: default | single_stream | multi_stream | elastic "
                        "(default: multi_stream when --num-streams > 1)")
    engine.add_argument("--intra-op-threads", type=int, default=0, help="ONNX Runtime intra-op threads")
    engine.add_argument("--inter-op-threads", type=int, default=0, help="ONNX Runtime inter-op threads")
    engine.add_argument("--workers", type=int, help="SUT worker threads (default: --num-streams or 1)")
    engine.add_argument("--batch-timeout-ms", type=float, default=10.0,
                        help="Server: longest wait to fill a dynamic batch (default 10)")
    engine.add_argument("--server-policy", choices=SERVER_POLICIES, default="aging",
                        help="Server: which waiting sample runs next. aging (default): a sample that waited "
                        "--batch-timeout-ms first, else the shortest bucket that fills a batch; slack: least slack "
                        "to the 130 ms bound first, from each bucket's measured batch time")
    engine.add_argument("--buckets", default=None,
                        help="length bucketing: sequence lengths to build engines for; each batch runs at the "
                        f"smallest that holds its longest window (default {','.join(map(str, DEFAULT_BUCKETS))}; "
                        f"with --quick {','.join(map(str, QUICK.buckets))}; the window length is always one)")
    engine.add_argument("--cluster", default="local", choices=CLUSTERS,
                        help="local: the engines run in this process (default); ray: one engine per Ray actor on the "
                        "nodes of a Ray cluster, LoadGen and the scheduling stay here (README, Scaling out)")
    engine.add_argument("--ray-address", default=None,
                        help="--cluster ray: 'auto' joins the cluster started with `ray start` on this machine, HOST:PORT "
                        "a remote head; without it Ray is started on this machine")
    engine.add_argument("--ray-workers", type=int, default=None,
                        help="--cluster ray: engine actors (default: one per node, with all its CPUs)")
    engine.add_argument("--ray-cpus-per-worker", type=int, default=None,
                        help="--cluster ray: CPUs (engine cores) per actor (default: the node's CPUs / its actors)")
    engine.add_argument("--ray-connect-timeout-s", type=float, default=RAY_CONNECT_TIMEOUT_S,
                        help="--cluster ray: how long the Ray head may not answer, when joining its cluster and during a "
                        "run (then the run ends with an error) (default %(default)g)")
    engine.add_argument("--fast-vnni-emulation", action="store_true",
                        help="DeepSparse on CPUs without AVX-512 VNNI: NM_FAST_VNNI_EMULATION, a faster INT8 emulation "
                        "that changes the numerics slightly (see README, real-accuracy experiment; off by default)")
    engine.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="OpenVINO: the precision of the operations the model does not quantize, f32 or bf16 (auto: "
                        "the engine's default, bf16 where the CPU has native BF16); int8: insist that the model's "
                        "quantized matmuls run in INT8. What ran is read back and recorded (default auto)")
    engine.add_argument("--sparse-weights-rate", type=float, default=None,
                        help="OpenVINO: CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE, the weight sparsity from which INT8 "
                        "matmuls use sparse weights (default: OpenVINO's, off)")
    engine.add_argument("--no-bucketing", action="store_true",
                        help="run every window padded to the full 384 tokens, like the MLPerf reference (closed-"
                        "division style)")
    engine.add_argument("--packing", action="store_true",
                        help="Offline: pack several windows into each 384-token row (block-diagonal attention) and run "
                        "the model's packed variant, so almost no token is padding; --batch-size counts rows. Replaces "
                        "length bucketing; needs a model directory exported with its packed variant (README, Packing)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obert-harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario under LoadGen")
    run.add_argument("--scenario", default="Offline", choices=["Offline", "Server", "SingleStream"])
    run.add_argument("--mode", default="performance", choices=["performance", "accuracy", "both"],
                     help="'both' runs performance, then accuracy, each in its own run directory")
    run.add_argument("--model", default=None,
                     help="model directory, .onnx file, Hugging Face id or SparseZoo 'zoo:' stub (default: the "
                     "untrained oBERT-MobileBERT benchmark model in ./models, built on first use)")
    _add_data_args(run)
    run.add_argument("--quick", action="store_true",
                     help=f"smoke run: first ~{QUICK.count} features, {QUICK.min_duration_ms / 1000:.0f} s minimum "
                     f"duration, buckets {','.join(map(str, QUICK.buckets))} (fewer engines to compile); not a "
                     "compliant run")
    loadgen = run.add_argument_group("LoadGen overrides (any of these makes the run non-compliant)")
    loadgen.add_argument("--count", type=int, help="use only the first N features (accuracy is scored over the questions they cover)")
    loadgen.add_argument("--performance-count", type=int, help="performance sample count (default: mlperf.conf)")
    loadgen.add_argument("--min-duration-ms", type=int)
    loadgen.add_argument("--max-duration-ms", type=int)
    loadgen.add_argument("--min-query-count", type=int)
    loadgen.add_argument("--max-query-count", type=int)
    loadgen.add_argument("--target-qps", type=float, help="Offline expected QPS / Server target QPS")
    loadgen.add_argument("--target-latency-ms", type=float, help="Server latency bound (mlperf.conf: 130)")
    loadgen.add_argument("--expected-latency-ms", type=float, help="SingleStream expected latency")
    loadgen.add_argument("--mlperf-conf", default=str(REPO_ROOT / "mlperf.conf"))
    loadgen.add_argument("--user-conf", default=str(REPO_ROOT / "user.conf"))
    add_engine_args(run)
    run.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR), help="parent of the run directories")
    run.add_argument("--abort-when-invalid", action="store_true",
                     help="Server: stop as soon as more samples have missed the latency bound than p99 allows over "
                     "the whole run (it can no longer be VALID): the rest is answered empty, the run is kept, marked "
                     "INVALID with the reason, exit status 5. Without it the run goes on and a warning says so")
    run.add_argument("--inject-fault-after", type=int, help=argparse.SUPPRESS)  # tests: fail after N batches
    run.add_argument("--inject-delay-ms", type=float, help=argparse.SUPPRESS)  # tests: a slow engine
    run.add_argument("--fault-grace-s", type=float, default=10.0, help=argparse.SUPPRESS)

    acc = sub.add_parser("accuracy", help="score the accuracy log of a run directory")
    acc.add_argument("run_dir", help="an accuracy-mode run directory holding mlperf_log_accuracy.json and run.json; an "
                     "earlier accuracy.txt / predictions.json there is kept and the new score goes to rescored-<time>/")
    acc.add_argument("--partial", action="store_true",
                     help="score a log that lacks responses for some features over the questions it covers (refused "
                     "otherwise; not a result to report)")
    _add_data_args(acc)

    prep = sub.add_parser("prepare", help="resolve the dataset and build the feature cache")
    _add_data_args(prep)
    prep.add_argument("--download", action="store_true",
                      help="download SQuAD v1.1 dev (md5-checked) and the bert-base-uncased vocab (sha256-checked) into "
                      "--data-dir, $OBERT_DATA_DIR or the default data dir <cache dir>/data (needs internet)")
    bench = sub.add_parser("bench", help="the benchmark suite: throughput of ours vs peers and the published "
                           "design, harness overhead, Server latency vs QPS, memory, roofline, plots")
    _add_data_args(bench)
    bench.add_argument("--samples", type=int, default=512,
                       help="features per Offline throughput measurement, the first N of the dev set (default 512)")
    bench.add_argument("--buckets", default=",".join(map(str, DEFAULT_BUCKETS)),
                       help="length buckets of our configuration (default %(default)s)")
    bench.add_argument("--server-duration-ms", type=int, default=30000, help="duration of each Server point")
    bench.add_argument("--no-full", action="store_true", help="skip the Offline run over every feature")
    bench.add_argument("--sections", default="offline,peers,server,tune",
                       help="what to measure, of offline, peers, server, buckets (an engine at each length 64..384 "
                       "x batch 8/16, and every bucket set ranked with its batch per bucket; ~19 min), tune, vnni "
                       "(Offline over every feature and SingleStream with DeepSparse's NM_FAST_VNNI_EMULATION on and "
                       "off; ~25 min), ray (Offline over every feature "
                       "locally and through one-core Ray workers on a 2-node loopback cluster; on a one-node cluster the "
                       "placement and a Server sweep through Ray and locally; the projection to 1..64 nodes; ~45 min), "
                       "engines (OpenVINO beside DeepSparse on the same INT8 model: Offline over every feature, Server "
                       "sweeps, a full-length OpenVINO Server run, SingleStream, OpenVINO's precision and sparse-weights "
                       "variants; ~40 min), hosts (Offline over the first --samples features across two hosts emulated "
                       "with network and PID namespaces, one core each, Ray started on each with `ray start`, against "
                       "local on the same two cores; needs root; ~10 min) (default: %(default)s)")
    bench.add_argument("--reuse", action="append", default=[],
                       help="an earlier suite directory (same --samples and data): its jobs of the sections not "
                       "measured now are reported again, so one section can be re-measured alone; repeat to "
                       "combine several (the first that has a job wins)")
    bench.add_argument("--out-dir", default=str(REPO_ROOT / "bench_results"))
    bench.add_argument("--mlperf-conf", default=str(REPO_ROOT / "mlperf.conf"))
    bench.add_argument("--user-conf", default=str(REPO_ROOT / "user.conf"))
    # --- submission packaging (harness/submission/) ---
    from harness.submission.cli import add_submission_parser

    add_submission_parser(sub)
    # --- end submission packaging ---
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    install_sigterm_handler()
    install_stop_notice()
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "accuracy":
            return cmd_accuracy(args)
        if args.command == "prepare":
            return cmd_prepare(args)
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "submission":  # harness/submission/
            from harness.submission.cli import cmd_submission

            return cmd_submission(args)
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


# Libraries that log routine progress at INFO (sparseml's export transforms, DeepSparse's engine banner and
# CPU notices): a user sees them with -v only.
_CHATTY_LOGGERS = ("sparseml", "sparsezoo", "deepsparse", "onnx", "onnxruntime", "openvino", "transformers", "torch",
                   "accelerate")


def configure_logging(verbose: bool) -> None:
    """Quiet by default: progress bars, the summary and warnings; -v shows every library's details."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        # sparseml imports pkg_resources, which warns about its own deprecation on every start
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        # DeepSparse's engine logs natively (read when it loads): keep its errors, drop notices such as the
        # once-per-process note that INT8 is emulated without VNNI (run.json records cpu_vnni anyway).
        os.environ.setdefault("NM_LOGGING_LEVEL", "error")


def load_dataset_and_features(args, *, count: int | None = None):
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


def benchmark_model_dir(variant: str, vocab: Path, *, packed: bool = False, qdq: bool = False) -> Path:
    """The untrained benchmark model of a variant in ./models, built on first use. Its tokenizer files are
    written only from the bert-base-uncased vocab (the model's 30,522-token geometry); with other data (the
    built-in sample) it gets none and the harness tokenizes with the data's vocab. ``packed`` / ``qdq``: a directory
    built before models carried their packed variant / the QDQ form of an INT8 model (what OpenVINO runs) is rebuilt
    with it (the same seed gives the same model)."""
    from compression.architecture import DEFAULT_PRESET
    from compression.benchmark_model import build_benchmark_model, default_model_dir
    from squad.data import BERT_VOCAB_SHA256, file_sha256

    preset = os.environ.get(BENCHMARK_PRESET_ENV) or DEFAULT_PRESET
    model_dir = default_model_dir(variant, root=Path(os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR),
                                  preset=preset)
    exists = (model_dir / "model.onnx").is_file()
    manifest = _manifest(model_dir) if exists else {}
    int8 = manifest.get("precision") == "int8"
    missing = [why for wanted, lacking, why in (
        (packed, not manifest.get("packed"), "its packed variant for --packing"),
        (qdq, int8 and not manifest.get("qdq"), "its QDQ form for OpenVINO"),
        (packed and qdq, int8 and not (manifest.get("packed") or {}).get("qdq_onnx_file"),
         "the QDQ form of its packed variant for OpenVINO"),
    ) if exists and wanted and lacking]
    if not exists or missing:
        from compression.cli import configure_sparseml_logging

        configure_sparseml_logging(log.isEnabledFor(logging.DEBUG))
        why = f"to add {' and '.join(missing)}" if missing else "first use only"
        print(f"building the benchmark model {model_dir} ({why}, a few minutes)", file=sys.stderr)
        tokenizer_vocab = vocab if file_sha256(vocab) == BERT_VOCAB_SHA256 else None
        build_benchmark_model(model_dir, vocab=tokenizer_vocab, variant=variant, preset=preset, overwrite=bool(missing))
    return model_dir


def _manifest(model_dir: Path) -> dict:
    import json

    path = model_dir / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def resolve_run_model(spec: str | None, vocab: Path, cache_dir: Path, *, packed: bool = False, backend: str = ""):
    from harness.models import resolve_model

    if spec is None:
        spec = str(benchmark_model_dir(DEFAULT_MODEL_VARIANT, vocab, packed=packed, qdq=backend == "openvino"))
    return resolve_model(spec, download_dir=cache_dir / "models")


def cmd_run(args) -> int:
    from harness.backends import create_backend, import_engine
    from harness.models import check_model_fits, check_vocab_fits
    from harness.runner import RunRequest, execute_run
    from harness.settings import LoadGenOverrides, conf_test_settings, issue_plan, plan_note
    from squad.data import SAMPLE

    from harness.loadgen_logs import expected_bytes
    from harness.rundir import check_free_space, check_runs_root

    count = args.count if args.count is not None else (QUICK.count if args.quick else None)
    if count is not None and count < 1:
        raise ConfigError(f"--count must be >= 1, got {count}")
    check_runs_root(Path(args.runs_dir))  # before minutes of start-up, not when the first run directory is made
    modes = ["performance", "accuracy"] if args.mode == "both" else [args.mode]
    # The conf files are read once for every test of this command (see harness.settings.ConfSettings).
    conf = conf_test_settings(args.scenario, modes[0], mlperf_conf=Path(args.mlperf_conf),
                              user_conf=Path(args.user_conf))
    engine = EngineSettings.from_args(args)
    engine.backend_options(args.scenario)  # settings errors come before the data and model work
    dataset, features = load_dataset_and_features(args, count=count)
    check_free_space(Path(args.runs_dir), sum(expected_bytes(mode, len(features), features.params.max_seq_length)
                                              for mode in modes), f"{' and '.join(modes)} runs of {len(features)} features")
    model = resolve_run_model(args.model, dataset.vocab, Path(args.cache_dir), packed=engine.packing,
                              backend=engine.backend)
    backend_options = engine.backend_options(args.scenario, features.params.max_seq_length)
    sut_options = engine.sut_options(args.scenario)
    check_model_fits(model, features.params.max_seq_length)
    check_vocab_fits(model, dataset.vocab, sample=dataset.kind == SAMPLE)

    explicit = {
        "performance_count": args.performance_count, "min_duration_ms": args.min_duration_ms,
        "max_duration_ms": args.max_duration_ms, "min_query_count": args.min_query_count,
        "max_query_count": args.max_query_count, "target_qps": args.target_qps,
        "target_latency_ms": args.target_latency_ms, "expected_latency_ms": args.expected_latency_ms,
    }
    preset = quick_overrides(args.scenario, len(features)) if args.quick else {}
    overrides = LoadGenOverrides(**{**preset, **{k: v for k, v in explicit.items() if v is not None}})
    if "performance" in modes and overrides.given():  # said before the engines compile, not 20 minutes later
        settings, _ = conf.for_run(len(features), overrides, mode="performance")
        note = plan_note(args.scenario, issue_plan(args.scenario, settings), len(features), Path(args.user_conf))
        if note:
            log.warning("%s", note)
    wrapper = _test_wrapper(args)

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
        for mode in modes:
            request = RunRequest(
                scenario=args.scenario, mode=mode, backend=engine.backend, model=model, features=features,
                dataset=dataset, backend_options=backend_options, sut_options=sut_options,
                mlperf_conf=Path(args.mlperf_conf), user_conf=Path(args.user_conf), runs_root=Path(args.runs_dir),
                overrides=overrides, progress=not args.no_progress, backend_wrapper=wrapper,
                fault_grace_s=args.fault_grace_s, abort_when_invalid=args.abort_when_invalid,
                requested_count=args.count,
            )
            records.append(execute_run(request, backend=backend, conf_settings=conf))
    finally:
        backend.close()
    for note in dict.fromkeys(note for record in records for note in record["notes"]):
        print(f"NOTE: {note}")
    for record in records:
        print(record["summary"])
    return 0


def _test_wrapper(args):
    """The backend wrapper of the hidden test flags (fault injection, a slowed engine), or None."""
    if args.inject_fault_after is not None:
        from harness.backends.fault import FaultInjectingBackend

        return partial(FaultInjectingBackend, fail_after=args.inject_fault_after)  # picklable
    if args.inject_delay_ms is not None:
        from harness.backends.fault import SlowBackend

        return partial(SlowBackend, delay_s=args.inject_delay_ms / 1000.0)
    return None


def cmd_accuracy(args) -> int:
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


def cmd_prepare(args) -> int:
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


def cmd_bench(args) -> int:
    from harness.bench.peers import ort_dynamic_int8
    from harness.bench.suite import Suite, SuiteConfig, SuiteModels
    from harness.bucketing import parse_buckets
    from harness.models import resolve_model

    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    dataset, features = load_dataset_and_features(args)
    download_dir = Path(args.cache_dir) / "models"

    def model(variant: str, packed: bool = False):
        return resolve_model(str(benchmark_model_dir(variant, dataset.vocab, packed=packed)), download_dir=download_dir)

    sections = tuple(part.strip() for part in args.sections.split(",") if part.strip())
    # the packed job needs the packed variant; OpenVINO (section engines) the QDQ form
    models = SuiteModels(sparse_int8=resolve_model(str(benchmark_model_dir(
        "sparse-int8", dataset.vocab, packed="offline" in sections, qdq="engines" in sections)), download_dir=download_dir))
    if "peers" in sections or "engines" in sections or args.reuse:  # reused rows need the models for their MAC counts
        dense_dir = benchmark_model_dir("dense-fp32", dataset.vocab)
        models.dense_fp32_14l = resolve_model(str(dense_dir), download_dir=download_dir)
    if "peers" in sections or args.reuse:
        models.dense_fp32_24l = model("dense-fp32-24l")
        models.ort_int8_14l = resolve_model(str(ort_dynamic_int8(dense_dir)), download_dir=download_dir)
    config = SuiteConfig(samples=args.samples, buckets=parse_buckets(args.buckets) or (),
                         server_duration_ms=args.server_duration_ms, full_offline=not args.no_full, sections=sections)
    suite = Suite(config, models, features=features, dataset=dataset, mlperf_conf=Path(args.mlperf_conf),
                  user_conf=Path(args.user_conf), out_root=Path(args.out_dir),
                  feature_cache_dir=Path(args.cache_dir) / "features", progress=not args.no_progress,
                  reuse=[Path(path) for path in args.reuse])
    suite.run()
    print((suite.out_dir / "report.md").read_text())
    print(f"results: {suite.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
