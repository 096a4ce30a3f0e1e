"""The bare engine loop: the backend alone over the same batches the harness would run, no LoadGen,
no QSL, no response encoding. Harness overhead = 1 - harness samples/s / bare samples/s."""

from __future__ import annotations

import threading
import time

import numpy as np

from harness.backends import Backend
from harness.bucketing import bucket_batches, bucket_index
from harness.squad import FeatureSet


def batch_inputs(features: FeatureSet, batch: np.ndarray, buckets: tuple[int, ...] | None, length: int | None = None):
    """The batch's arrays, cut to its bucket's length (or ``length``), as the engine will run them."""
    if length is None and buckets:
        length = buckets[int(bucket_index(buckets, features.seq_lengths[batch]).max())]
    width = length or features.input_ids.shape[1]
    return tuple(np.ascontiguousarray(a[batch, :width], dtype=np.int64)
                 for a in (features.input_ids, features.input_mask, features.segment_ids))


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
    position = iter(range(len(inputs)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(position, None)
            if i is None:
                return
            backend.predict(*inputs[i])

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(indices) / (time.perf_counter() - started)
