"""Argument groups shared by the sub-commands that start runs (``run``, ``bench``, ``submission``): data and cache
directories, backend and engine flags, and the default directories they name. Parsing only: what the values mean is
the job of :mod:`harness.run_options`, :mod:`harness.run_inputs` and the commands."""

from __future__ import annotations

import argparse
import os

from harness.backends.base import CLUSTERS, RAY_CONNECT_TIMEOUT_S
from harness.backends.openvino_backend import PRECISIONS
from harness.bucketing import DEFAULT_BUCKETS
from harness.engine_choice import AUTO, BACKEND_CHOICES
from harness.run_options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_STREAMS,
    QUICK,
    TOKEN_POLICY_MAX_BATCH,
    TOKEN_POLICY_STREAMS,
)
from harness.scenarios import DEFAULT_SERVER_POLICY, SERVER_POLICIES
from harness.sysinfo import REPO_ROOT

DEFAULT_RUNS_DIR = REPO_ROOT / "runs"
DEFAULT_CACHE_ENV = "OBERT_CACHE_DIR"


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


def add_engine_args(parser: argparse.ArgumentParser, note: str = "") -> None:
    """Backend and engine flags, shared by every command that starts runs (see EngineSettings)."""
    parser.add_argument("--backend", default=AUTO, choices=BACKEND_CHOICES,
                        help="inference engine; auto (default): the engine measured fastest on this CPU class "
                        "(OpenVINO with AMX or AVX-512 VNNI, else DeepSparse), said at the start and recorded in "
                        "run.json (docs/running.md, Which engine)")
    engine = parser.add_argument_group("engine" + note)
    engine.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int,
                        help="engine batch size (default: " +
                        ", ".join(f"{scenario} {n}" for scenario, n in DEFAULT_BATCH_SIZE.items()) +
                        f"; Server with the tokens policy: calls of up to {TOKEN_POLICY_MAX_BATCH} windows or rows)")
    engine.add_argument("--num-streams", type=int,
                        help="DeepSparse/OpenVINO streams (and SUT worker threads) (default: " +
                        ", ".join(f"{scenario} {n}" for scenario, n in DEFAULT_STREAMS.items()) +
                        f"; Server with the tokens policy: {TOKEN_POLICY_STREAMS})")
    engine.add_argument("--num-cores", type=int, help="DeepSparse cores / OpenVINO threads (default: all)")
    engine.add_argument("--scheduler", default=None,
                        help="DeepSparse scheduler: default | single_stream | multi_stream | elastic "
                        "(default: multi_stream when --num-streams > 1)")
    engine.add_argument("--intra-op-threads", type=int, default=0, help="ONNX Runtime intra-op threads")
    engine.add_argument("--inter-op-threads", type=int, default=0, help="ONNX Runtime inter-op threads")
    engine.add_argument("--workers", type=int, help="SUT worker threads (default: --num-streams or 1)")
    engine.add_argument("--batch-timeout-ms", type=float, default=10.0,
                        help="Server: longest wait to fill a dynamic batch (default 10)")
    engine.add_argument("--server-policy", choices=SERVER_POLICIES, default=DEFAULT_SERVER_POLICY,
                        help="Server: which waiting samples run next. tokens (default): a free worker takes the oldest "
                        "sample and the least-slack others up to a token budget per engine call, never waiting for "
                        "more (packed rows where the model has a packed variant; engine calls of 1..8 windows or rows; "
                        "one stream per core); aging: batches of --batch-size, a sample that waited --batch-timeout-ms "
                        "first, else the shortest bucket that fills a batch; slack: as aging, least slack to the 130 ms "
                        "bound first (docs/running.md, Server batching)")
    engine.add_argument("--token-budget", type=int, default=None,
                        help="Server, --server-policy tokens: tokens the engine computes per call, padding included "
                        "(default: the largest whose median call takes at most 0.4 of the latency bound, measured before "
                        "the run and recorded in run.json)")
    engine.add_argument("--buckets", default=None,
                        help="length bucketing: sequence lengths to build engines for; each batch runs at the "
                        f"smallest that holds its longest window (default {','.join(map(str, DEFAULT_BUCKETS))}; "
                        f"with --quick {','.join(map(str, QUICK.buckets))}; the window length is always one)")
    engine.add_argument("--cluster", default="local", choices=CLUSTERS,
                        help="local: the engines run in this process (default); ray: one engine per Ray actor on the "
                        "nodes of a Ray cluster, LoadGen and the scheduling stay here (docs/scaling.md)")
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
                        "that changes the numerics slightly (docs/accuracy.md; off by default)")
    engine.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="OpenVINO: the precision of the operations the model does not quantize, f32 or bf16 (auto: "
                        "the engine's default, bf16 where the CPU has native BF16); int8: insist that the model's "
                        "quantized matmuls run in INT8. What ran is read back and recorded (default auto)")
    engine.add_argument("--sparse-weights-rate", type=float, default=None,
                        help="OpenVINO: CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE, the weight sparsity from which INT8 "
                        "matmuls use sparse weights (default: OpenVINO's, off). Its sparse kernels need AMX: on AVX-512 "
                        "CPUs without it no matmul used them (run.json: backend.executed_precision.sparse_weight_matmuls)")
    engine.add_argument("--no-bucketing", action="store_true",
                        help="run every window padded to the full 384 tokens, like the MLPerf reference (closed-"
                        "division style)")
    engine.add_argument("--packing", action="store_true", default=None,
                        help="pack several windows into each 384-token row (block-diagonal attention) and run the "
                        "model's packed variant, so almost no token is padding; --batch-size counts rows. Replaces "
                        "length bucketing; needs a model directory exported with its packed variant (docs/running.md, "
                        "Packing). Offline, and Server with the tokens policy (its default there where the model has "
                        "a packed variant)")
    engine.add_argument("--no-packing", dest="packing", action="store_false",
                        help="Server with the tokens policy: length buckets instead of packed rows")

