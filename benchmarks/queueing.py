"""What any batch-1 Server SUT could sustain on this machine, from measured service times.

LoadGen's Server scenario issues single-sample queries as a Poisson process at the target QPS, and a run
is valid when the 99th percentile of query latency stays within the bound (bert: 130 ms). Given how long
the engine takes per window (measured, per bucket), the best a first-come-first-served SUT without
batching can do is an M/G/1 queue with zero overhead. This module simulates that queue (Lindley's
recursion, common random numbers across loads so p99 grows smoothly with load) and finds by bisection the
highest arrival rate whose p99 stays within the bound. Comparing it with the harness's measured Server
result shows how much is lost to the SUT; comparing it with Offline samples/s shows what the hardware
allows at all.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ServiceModel:
    """Per-window service time: a window of bucket ``b`` takes one of ``seconds[b]`` (bootstrap draw).
    ``shares[b]`` is the fraction of the dev windows that falls in bucket ``b`` (LoadGen picks samples
    uniformly from the performance set, so arrivals follow the same mix)."""

    lengths: tuple[int, ...]
    shares: tuple[float, ...]
    seconds: tuple[tuple[float, ...], ...]

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        buckets = rng.choice(len(self.lengths), size=count, p=np.asarray(self.shares))
        out = np.empty(count)
        for b, times in enumerate(self.seconds):
            chosen = buckets == b
            out[chosen] = rng.choice(np.asarray(times), size=int(chosen.sum()))
        return out

    @property
    def mean_s(self) -> float:
        return float(sum(share * np.mean(times) for share, times in zip(self.shares, self.seconds)))


def fifo_latencies(arrival_gaps_s: np.ndarray, service_s: np.ndarray, servers: int = 1) -> np.ndarray:
    """Sojourn time (wait + service) of each job in a first-come-first-served queue with ``servers``
    identical servers (each job starts on the server that frees up first)."""
    free_at = [0.0] * servers  # a heap of the times each server becomes free
    latencies = np.empty_like(service_s)
    now = 0.0
    for i, (gap, service) in enumerate(zip(arrival_gaps_s, service_s)):
        now += gap
        start = max(now, heapq.heappop(free_at))
        heapq.heappush(free_at, start + service)
        latencies[i] = start + service - now
    return latencies


def percentile_at_rate(model: ServiceModel, rate_qps: float, *, servers: int = 1, percentile: float = 99.0,
                       queries: int = 20000, seed: int = 0) -> float:
    """The ``percentile`` of query latency (seconds) at Poisson load ``rate_qps``."""
    rng = np.random.default_rng(seed)
    unit_gaps = rng.exponential(1.0, size=queries)  # scaled by the rate: the same arrivals at every load
    service = model.draw(queries, rng)
    return float(np.percentile(fifo_latencies(unit_gaps / rate_qps, service, servers), percentile))


def max_rate_within_bound(model: ServiceModel, bound_s: float, *, servers: int = 1, percentile: float = 99.0,
                          queries: int = 20000, seed: int = 0) -> float:
    """The highest Poisson rate (queries/s) whose latency ``percentile`` stays within ``bound_s``; 0 when even
    an unloaded queue misses it."""
    low, high = 0.0, servers / model.mean_s  # at utilisation 1 the queue is unstable
    if percentile_at_rate(model, 1e-6 * high, servers=servers, percentile=percentile, queries=queries,
                          seed=seed) > bound_s:
        return 0.0
    for _ in range(30):
        mid = (low + high) / 2
        if percentile_at_rate(model, mid, servers=servers, percentile=percentile, queries=queries,
                              seed=seed) <= bound_s:
            low = mid
        else:
            high = mid
    return low


def service_model(times_by_length: dict[int, list[float]], lengths_of_windows: np.ndarray) -> ServiceModel:
    """A ServiceModel from measured per-bucket times and the dev set's window lengths."""
    from harness.bucketing import bucket_shares

    lengths = tuple(sorted(times_by_length))
    shares = bucket_shares(lengths, lengths_of_windows)
    return ServiceModel(lengths, tuple(float(x) for x in shares), tuple(tuple(times_by_length[n]) for n in lengths))
