"""The bare engine loop: the backend alone over the same batches the harness would run, no LoadGen,
no QSL, no response encoding. Harness overhead = 1 - harness samples/s / bare samples/s."""

from __future__ import annotations

import threading
import time

import numpy as np

from harness.backends import Backend
from harness.bucketing import bucket_batches, bucket_index
from squad.features import FeatureSet


def batch_inputs(features: FeatureSet, batch: np.ndarray, buckets: tuple[int, ...] | None, length: int | None = None):
    """The batch's arrays, cut to its bucket's length (or ``length``), as the engine will run them."""
    if length is None and buckets:
        length = buckets[int(bucket_index(buckets, features.seq_lengths[batch]).max())]
    width = length or features.input_ids.shape[1]
    return tuple(np.ascontiguousarray(a[batch, :width], dtype=np.int64)
                 for a in (features.input_ids, features.input_mask, features.segment_ids))


def run_back_to_back(backend: Backend, inputs: list[tuple], workers: int = 1) -> list[float]:
    """Run every batch of ``inputs`` through the backend, back to back, from ``workers`` threads (one per
    engine stream) taking the next batch as they free up; returns the seconds each ``predict`` took."""
    position = iter(range(len(inputs)))
    lock = threading.Lock()
    seconds: list[float] = []

    def work() -> None:
        while True:
            with lock:
                i = next(position, None)
            if i is None:
                return
            started = time.perf_counter()
            backend.predict(*inputs[i])
            seconds.append(time.perf_counter() - started)  # list.append is atomic under the GIL

    threads = [threading.Thread(target=work) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seconds


def bare_engine_loop(
    backend: Backend, features: FeatureSet, indices: np.ndarray, *, workers: int = 1, length: int | None = None,
) -> float:
    """Samples/s of the backend alone over ``indices``, cut into the batches the Offline SUT would make
    (bucket-pure with length bucketing), run back to back by ``workers`` threads (one per stream).
    ``length``: cut every window to this many tokens (an engine built for one shorter length)."""
    buckets = backend.sequence_buckets
    batches = [np.asarray(b) for b in bucket_batches(list(indices), features.seq_lengths[indices], buckets,
                                                      backend.batch_size)]
    inputs = [batch_inputs(features, b, buckets, length) for b in batches]
    backend.predict(*inputs[0])  # warm-up, as the harness warms up before LoadGen starts
    started = time.perf_counter()
    run_back_to_back(backend, inputs, workers)
    return len(indices) / (time.perf_counter() - started)


def single_window_latencies(backend: Backend, features: FeatureSet, per_bucket: int,
                            workers: int = 1) -> dict[int, list[float]]:
    """Seconds one ``predict`` of a single window takes, for up to ``per_bucket`` dev windows of each bucket,
    run back to back by ``workers`` threads (one per computing engine stream, so every stream is busy, as near
    a Server run's latency bound, and no call waits behind another): the service times of a batch-1 Server
    SUT."""
    buckets = backend.sequence_buckets or (features.params.max_seq_length,)
    owner = bucket_index(buckets, features.seq_lengths)
    times: dict[int, list[float]] = {}
    for b, length in enumerate(buckets):
        windows = np.flatnonzero(owner == b)[:per_bucket]
        if windows.size == 0:
            continue
        backend.predict(*batch_inputs(features, windows[:1], buckets))  # warm-up
        inputs = [batch_inputs(features, np.array([window]), buckets) for window in windows]
        times[length] = run_back_to_back(backend, inputs, workers)
    return times
