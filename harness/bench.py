"""Benchmarks that print figures (not timed tests): Offline throughput of each backend on each model,
and the harness's overhead against a bare engine loop over the same batches, measured in one run.

Overhead is ``1 - harness_samples_per_s / bare_samples_per_s`` where both use the same compiled
engine settings, batch size, worker count and features; the harness figure is LoadGen's own Offline
result (it includes QSL gathering, response encoding and LoadGen's bookkeeping).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from harness.backends import BackendOptions, create_backend
from harness.bucketing import bucket_batches, bucket_index
from harness.data import DatasetFiles
from harness.models import ModelInfo, check_model_fits
from harness.rundir import create_run_dir, mark_complete, write_json_atomic
from harness.isolated import execute_run_isolated
from harness.runner import RunRequest
from harness.scenarios import SutOptions
from harness.settings import LoadGenOverrides
from harness.squad import FeatureSet, select_features
from harness.sysinfo import machine_info, software_versions

log = logging.getLogger(__name__)


@dataclass
class BenchCase:
    label: str
    backend: str
    model: ModelInfo


@dataclass
class BenchRow:
    label: str
    backend: str
    model: str
    batch_size: int
    samples: int
    bare_samples_per_s: float  # mean of the bare loop measured just before and just after the harness run
    bare_spread_pct: float  # |before - after| / mean: how much the machine drifted meanwhile
    harness_samples_per_s: float
    overhead_pct: float
    harness_validity: str | None


def bare_engine_loop(backend, features: FeatureSet, indices: np.ndarray, repeats: int = 1) -> float:
    """Samples/s of the backend alone: the same batches the harness would run, back to back."""
    buckets = backend.sequence_buckets
    batches = [np.asarray(b) for b in bucket_batches(list(indices), features.seq_lengths[indices], buckets,
                                                      backend.batch_size)]
    inputs = [_batch_inputs(features, b, buckets) for b in batches]
    backend.predict(*inputs[0])  # warm-up, as LoadGen's run is preceded by compile + first batch
    started = time.perf_counter()
    for _ in range(repeats):
        for ids, mask, types in inputs:
            backend.predict(ids, mask, types)
    elapsed = time.perf_counter() - started
    return repeats * len(indices) / elapsed


def _batch_inputs(features: FeatureSet, batch: np.ndarray, buckets: tuple[int, ...] | None):
    """The batch's arrays, already cut to its bucket's length (as the engine will run them)."""
    arrays = (features.input_ids[batch], features.input_mask[batch], features.segment_ids[batch])
    if not buckets:
        return arrays
    length = buckets[int(bucket_index(buckets, features.seq_lengths[batch]).max())]
    return tuple(np.ascontiguousarray(a[:, :length]) for a in arrays)


def run_offline_bench(
    cases: list[BenchCase],
    *,
    features: FeatureSet,
    dataset: DatasetFiles,
    batch_size: int,
    sample_count: int,
    mlperf_conf: Path,
    user_conf: Path,
    out_root: Path,
    feature_cache_dir: Path,
    progress: bool = True,
) -> tuple[list[BenchRow], Path]:
    """Measure every case (bare loop, then the harness Offline run); returns rows and the result dir."""
    count = min(sample_count, len(features))
    indices = np.arange(count)
    out_dir = create_run_dir(out_root, "bench", "offline")
    rows: list[BenchRow] = []
    options = BackendOptions(batch_size=batch_size)
    for case in cases:
        check_model_fits(case.model, features.params.max_seq_length)
        log.info("bench: %s on %s", case.backend, case.label)
        backend = create_backend(case.backend, case.model, options)
        bare_before = bare_engine_loop(backend, features, indices)
        # Each LoadGen test in its own process (harness.isolated): one test per process is LoadGen's rule.
        record = execute_run_isolated(RunRequest(
            scenario="Offline", mode="performance", backend=case.backend, model=case.model,
            features=select_features(features, count), dataset=dataset, backend_options=options,
            sut_options=SutOptions(num_workers=1), mlperf_conf=mlperf_conf, user_conf=user_conf,
            runs_root=out_dir / "runs",
            overrides=LoadGenOverrides(min_duration_ms=0, min_query_count=count, max_query_count=count,
                                       target_qps=1.0),
            progress=progress,
        ), feature_cache_dir)
        harness = float(record["results"]["samples_per_second"])
        # Measure the bare loop again after the harness run: a large difference means the machine was
        # busy with something else and the overhead figure is not to be trusted.
        bare_after = bare_engine_loop(backend, features, indices)
        backend.close()
        bare = (bare_before + bare_after) / 2
        rows.append(BenchRow(
            label=case.label, backend=case.backend, model=case.model.label, batch_size=batch_size, samples=count,
            bare_samples_per_s=round(bare, 2), bare_spread_pct=round(100 * abs(bare_before - bare_after) / bare, 1),
            harness_samples_per_s=round(harness, 2),
            overhead_pct=round(100.0 * (1.0 - harness / bare), 2),
            harness_validity=record["results"].get("validity"),
        ))
    write_json_atomic(out_dir / "bench.json", {
        "rows": [asdict(r) for r in rows], "machine": machine_info(), "software": software_versions(),
        "features": count, "dataset": str(dataset.dev_json), "official_dataset": dataset.official,
    })
    (out_dir / "bench.md").write_text(markdown_table(rows) + "\n")
    mark_complete(out_dir)
    return rows, out_dir


def markdown_table(rows: list[BenchRow]) -> str:
    lines = [
        "| model | backend | batch | harness samples/s | bare engine samples/s (drift) | harness overhead |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.label} | {r.backend} | {r.batch_size} | {r.harness_samples_per_s:.2f} | "
            f"{r.bare_samples_per_s:.2f} (±{r.bare_spread_pct:.1f}%) | {r.overhead_pct:+.2f}% |"
        )
    return "\n".join(lines)


def speedup_lines(rows: list[BenchRow]) -> list[str]:
    """DeepSparse over ONNX Runtime on each model, from the harness figures of this one run."""
    by_key = {(r.label, r.backend): r for r in rows}
    lines = []
    for label in dict.fromkeys(r.label for r in rows):
        ds, ort = by_key.get((label, "deepsparse")), by_key.get((label, "onnxruntime"))
        if ds and ort:
            lines.append(f"{label}: DeepSparse / ONNX Runtime = {ds.harness_samples_per_s / ort.harness_samples_per_s:.2f}x")
    return lines


