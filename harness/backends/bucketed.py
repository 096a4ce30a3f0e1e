"""A backend that holds one engine per sequence-length bucket (see ``harness.bucketing``).

Engines are built from copies of the model whose sequence axis is rewritten: fixed to each bucket length
for DeepSparse (one compiled engine per length), symbolic for ONNX Runtime (one session runs every
length). Before a run, the same synthetic windows are run at every bucket and at full length; if the
logits of the real tokens differ beyond ``BUCKET_TOLERANCE`` (a model whose graph hard-codes the
sequence length, or pools over padding), the run stops with a :class:`ModelError` that names the model
and points at ``--no-bucketing``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.backends.base import Backend, BackendOptions
from harness.backends.registry import Engine
from harness.bucketing import batch_bucket
from harness.errors import ModelError
from harness.models import ModelInfo, inspect_onnx_model

log = logging.getLogger(__name__)
SIGNAL_POLL_S = 0.25  # how often the wait for the bucket engines' compiles lets a signal in

# Largest |bucketed - full-length| start/end logit allowed on real tokens, relative to the logits' scale
# (max |logit|) plus an absolute floor. FP32 kernels tiled for another length reorder float sums: ~1e-6.
BUCKET_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}


def write_sequence_variant(model: ModelInfo, proto, length: int | None, out_dir: Path) -> ModelInfo:
    """Save ``proto`` (the model's graph) with its sequence axis set to ``length`` (None: symbolic)."""
    graph = proto.graph
    names = set(model.input_names.values()) | {model.start_output, model.end_output}
    for value in list(graph.input) + list(graph.output):
        if value.name not in names:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 2:
            raise ModelError(f"{model.onnx_path}: {value.name!r} has rank {len(dims)}, expected [batch, sequence]")
        dims[1].Clear()
        if length is None:
            dims[1].dim_param = "sequence"
        else:
            dims[1].dim_value = length
    # Inferred intermediate shapes may pin the old length; they are optional, so drop them.
    del graph.value_info[:]
    import onnx

    path = out_dir / f"model-seq{length or 'dynamic'}.onnx"
    onnx.save(proto, str(path))
    info = inspect_onnx_model(path)
    info.manifest = model.manifest
    return info


class BucketedBackend(Backend):
    """Routes each batch to the engine of the smallest bucket holding its longest window."""

    def __init__(self, engines: dict[int, Backend], model: ModelInfo, options: BackendOptions) -> None:
        super().__init__(model, options)
        self.engines = engines
        self.buckets = tuple(sorted(engines))
        first = engines[self.buckets[0]]
        self.name = first.name
        self.check: dict = {}

    @property
    def sequence_buckets(self) -> tuple[int, ...] | None:
        return self.buckets

    @property
    def pads_batches(self) -> bool:
        return self.engines[self.buckets[-1]].pads_batches

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self.engines[self.buckets[-1]].batch_sizes

    def batch_cost(self, lengths: Sequence[int], width: int) -> int:
        """Rows padded to a batch size, each at the smallest bucket that holds the longest window."""
        return self.padded_rows(len(lengths)) * self.buckets[int(np.searchsorted(self.buckets, max(lengths)))]

    def bucket_for(self, attention_mask: np.ndarray) -> int:
        """Smallest bucket holding every window of the batch (its last non-padding position)."""
        return batch_bucket(attention_mask, self.buckets)

    def predict(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`Backend.predict`, but the logits are ``[n, bucket]``: positions past the bucket are
        padding (the accuracy encoder pads them with a large negative logit)."""
        length = self.bucket_for(attention_mask)
        if input_ids.shape[1] != length:
            input_ids, attention_mask, token_type_ids = (
                np.ascontiguousarray(a[:, :length], dtype=np.int64) for a in (input_ids, attention_mask, token_type_ids)
            )
        return self.engines[length].predict(input_ids, attention_mask, token_type_ids)

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError("BucketedBackend routes in predict(); its engines run the batches")

    def describe(self) -> dict:
        described = {**self.engines[self.buckets[-1]].describe(), "sequence_buckets": list(self.buckets),
                     "bucket_check": self.check}
        if "layer_profile" in described:  # OpenVINO's counters (--perf-counters): every bucket engine's
            from engine_introspection.openvino import merge_profiles

            engines = {id(e): e for e in self.engines.values()}.values()
            described["layer_profile"] = merge_profiles([e.describe()["layer_profile"] for e in engines])
        return described

    def close(self) -> None:
        for engine in {id(e): e for e in self.engines.values()}.values():
            engine.close()
        self.engines = {}


def create_bucketed_backend(engine: Engine, model: ModelInfo, options: BackendOptions,
                            progress: bool = True) -> BucketedBackend:
    """Build one ``engine`` per bucket in ``options.sequence_buckets`` and check them against full length."""
    from tqdm import tqdm

    import onnx

    buckets = tuple(options.sequence_buckets)
    if model.sequence_length is not None and model.sequence_length != buckets[-1]:
        raise ModelError(f"{model.onnx_path}: the model takes {model.sequence_length}-token windows, but the largest "
                         f"bucket is {buckets[-1]}")
    inner_options = replace(options, sequence_buckets=None)
    try:
        proto = onnx.load(str(model.onnx_path))
    except Exception as exc:
        raise ModelError(f"{model.onnx_path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    engines: dict[int, Backend] = {}
    work_dir = Path(tempfile.mkdtemp(prefix="obert-buckets-"))
    try:
        if engine.any_length:
            # One session with a symbolic sequence axis runs every bucket length.
            session = _build(engine, write_sequence_variant(model, proto, None, work_dir), inner_options, model,
                             "dynamic")
            engines = {length: session for length in buckets}
        else:
            # Compiling is mostly single-threaded and releases the GIL: build the engines side by side.
            engine.import_library()  # here, not in the pool's threads (see Engine.import_library)
            variants = {length: write_sequence_variant(model, proto, length, work_dir) for length in buckets}
            del proto  # the engines read the files; peak memory matters (one compiled engine is ~240 MB)
            bar = tqdm(total=len(buckets), desc=f"compiling {len(buckets)} {engine.name} engines (seq {','.join(map(str, buckets))})",
                       unit="engine", disable=not progress or None, file=sys.stderr, leave=False)
            pool = ThreadPoolExecutor(max_workers=max(1, min(len(buckets), os.cpu_count() or 1)))
            try:
                futures = {pool.submit(_build, engine, variant, inner_options, model, str(length)): length
                           for length, variant in variants.items()}
                pending = set(futures)
                while pending:
                    # In slices: a Ctrl-C the kernel hands to another thread reaches Python only when the main
                    # thread runs again, and an untimed wait would hold it until a compile ends.
                    done, pending = wait(pending, timeout=SIGNAL_POLL_S, return_when=FIRST_COMPLETED)
                    for future in done:
                        if future.exception() is None:
                            engines[futures[future]] = future.result()
                        bar.update()
            except BaseException:  # Ctrl-C/SIGTERM: do not wait for the compiles still running
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
            bar.close()
            failed = sorted((length, f.exception()) for f, length in futures.items() if f.exception() is not None)
            if failed:
                raise failed[0][1]
    except BaseException:
        for engine in {id(e): e for e in engines.values()}.values():
            engine.close()
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    backend = BucketedBackend(engines, model, options)
    backend.check = check_bucket_equivalence(backend)
    return backend


def _build(engine: Engine, variant: ModelInfo, options: BackendOptions, model: ModelInfo, what: str) -> Backend:
    try:
        return engine(variant, options)
    except ModelError as exc:
        raise ModelError(f"{model.onnx_path}: length bucketing needs the model at sequence length {what}, and "
                         f"{engine.name} could not build it ({exc}); run with --no-bucketing") from exc


def probe_windows(batch_size: int, max_length: int, shortest_bucket: int, seed: int = 0):
    """Synthetic right-padded windows (``[CLS] q [SEP] c [SEP]`` layout) that fit the shortest bucket."""
    rng = np.random.default_rng(seed)
    lengths = np.linspace(max(4, shortest_bucket // 2), shortest_bucket, batch_size).astype(int)
    positions = np.arange(max_length)[None, :]
    mask = (positions < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1000, 2000, size=(batch_size, max_length), dtype=np.int64) * mask
    ids[:, 0] = 101
    ids[np.arange(batch_size), lengths - 1] = 102
    types = ((positions >= (lengths // 3)[:, None]) & (mask == 1)).astype(np.int64)
    return ids, mask, types, lengths


def check_bucket_equivalence(backend: BucketedBackend) -> dict:
    """Run the same windows at every bucket and at full length; the real tokens' logits must agree."""
    full = backend.buckets[-1]
    ids, mask, types, lengths = probe_windows(backend.batch_size, full, backend.buckets[0])
    ref_start, ref_end = backend.engines[full].predict(ids, mask, types)
    scale = float(max(np.abs(ref_start).max(), np.abs(ref_end).max(), 1.0))
    allowed = BUCKET_TOLERANCE["atol"] + BUCKET_TOLERANCE["rtol"] * scale
    real = np.arange(full)[None, :] < lengths[:, None]
    worst = 0.0
    for length in backend.buckets[:-1]:
        start, end = backend.engines[length].predict(*(np.ascontiguousarray(a[:, :length]) for a in (ids, mask, types)))
        keep = real[:, :length]
        diff = max(float(np.abs(start - ref_start[:, :length])[keep].max()),
                   float(np.abs(end - ref_end[:, :length])[keep].max()))
        worst = max(worst, diff)
        if not diff <= allowed:
            raise ModelError(
                f"{backend.model.onnx_path}: at sequence length {length} the model's logits differ from the "
                f"{full}-token run by up to {diff:.3g} (allowed {allowed:.3g}); its output depends on the padding "
                "length, so length bucketing would change results: run with --no-bucketing"
            )
    return {"max_abs_diff": worst, "allowed": allowed, "probe_windows": int(len(lengths))}
