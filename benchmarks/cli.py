"""Command line of the benchmark suite: ``obert-bench`` / ``python -m benchmarks``.

Throughput of our configuration against peer engines and Neural Magic's published design, the harness's overhead
against a bare engine loop, Server latency against load, memory, the roofline and plots (docs/performance.md).
Figures, not a test: each measurement runs in its own process; the report goes to --out-dir.
It runs like ``obert-harness``: same data options, logging (-v), one-line errors and Ctrl-C/SIGTERM handling.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from harness.run_inputs import add_data_args
from harness.bucketing import DEFAULT_BUCKETS
from harness.sysinfo import REPO_ROOT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_data_args(parser)
    parser.add_argument("--samples", type=int, default=512,
                        help="features per Offline throughput measurement, the first N of the dev set (default 512)")
    parser.add_argument("--buckets", default=",".join(map(str, DEFAULT_BUCKETS)),
                        help="length buckets of our configuration (default %(default)s)")
    parser.add_argument("--server-duration-ms", type=int, default=30000, help="duration of each Server point")
    parser.add_argument("--no-full", action="store_true", help="skip the Offline run over every feature")
    parser.add_argument("--sections", default="offline,peers,server,tune",
                        help="what to measure, of offline, peers, server, buckets (an engine at each length 64..384 "
                        "x batch 8/16, and every bucket set ranked with its batch per bucket; ~19 min), tune, vnni "
                        "(Offline over every feature and SingleStream with DeepSparse's NM_FAST_VNNI_EMULATION on and "
                        "off; ~25 min), ray (Offline over every feature locally and through one-core Ray workers on a "
                        "2-node loopback cluster; on a one-node cluster the placement and a Server sweep through Ray "
                        "and locally; the projection to 1..64 nodes; ~45 min), engines (OpenVINO beside DeepSparse on "
                        "the same INT8 model: Offline over every feature, Server sweeps with the tokens and the aging "
                        "policy, full-length Server runs per engine with its best policy until one is VALID, SingleStream, OpenVINO's "
                        "precision and sparse-weights variants; ~45-65 min), hosts (Offline over the first --samples "
                        "features across two hosts emulated with network and PID namespaces, one core each, Ray "
                        "started on each with `ray start`, against local on the same two cores; needs root; ~10 min) "
                        "(default: %(default)s)")
    parser.add_argument("--reuse", action="append", default=[],
                        help="an earlier suite directory (same --samples and data): its jobs of the sections not "
                        "measured now are reported again, so one section can be re-measured alone; repeat to "
                        "combine several (the first that has a job wins)")
    parser.add_argument("--out-dir", default=str(REPO_ROOT / "bench_results"))
    parser.add_argument("--mlperf-conf", default=str(REPO_ROOT / "mlperf.conf"))
    parser.add_argument("--user-conf", default=str(REPO_ROOT / "user.conf"))
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    """Build (or find) the benchmark models the sections need, run the suite and print its report."""
    from benchmarks.peers import ort_dynamic_int8
    from benchmarks.config import SuiteConfig, SuiteModels
    from benchmarks.suite import Suite
    from harness.bucketing import parse_buckets
    from harness.errors import ConfigError
    from harness.models import resolve_model
    from harness.run_inputs import benchmark_model_dir, load_dataset_and_features

    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    dataset, features = load_dataset_and_features(args)
    download_dir = Path(args.cache_dir) / "models"
    progress = not args.no_progress

    def model(variant: str, packed: bool = False, qdq: bool = False):
        directory = benchmark_model_dir(variant, dataset.vocab, packed=packed, qdq=qdq, progress=progress)
        return resolve_model(str(directory), download_dir=download_dir)

    sections = tuple(part.strip() for part in args.sections.split(",") if part.strip())
    # the packed job needs the packed variant; OpenVINO (section engines) the QDQ form
    models = SuiteModels(sparse_int8=model("sparse-int8", packed="offline" in sections, qdq="engines" in sections))
    if "peers" in sections or "engines" in sections or args.reuse:  # reused rows need the models for their MAC counts
        dense_dir = benchmark_model_dir("dense-fp32", dataset.vocab, progress=progress)
        models.dense_fp32_14l = resolve_model(str(dense_dir), download_dir=download_dir)
    if "peers" in sections or args.reuse:
        models.dense_fp32_24l = model("dense-fp32-24l")
        models.ort_int8_14l = resolve_model(str(ort_dynamic_int8(dense_dir)), download_dir=download_dir)
    config = SuiteConfig(samples=args.samples, buckets=parse_buckets(args.buckets) or (),
                         server_duration_ms=args.server_duration_ms, full_offline=not args.no_full, sections=sections)
    suite = Suite(config, models, features=features, dataset=dataset, mlperf_conf=Path(args.mlperf_conf),
                  user_conf=Path(args.user_conf), out_root=Path(args.out_dir),
                  feature_cache_dir=Path(args.cache_dir) / "features", progress=progress,
                  reuse=[Path(path) for path in args.reuse])
    suite.run()
    print((suite.out_dir / "report.md").read_text())
    print(f"results: {suite.out_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from harness.cli import run_command

    return run_command(build_parser().parse_args(argv), cmd_bench)

