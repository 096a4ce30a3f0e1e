"""LoadGen systems-under-test: how queries are turned into backend batches, one class per scenario.

- Offline: LoadGen issues one query holding every sample; the backend cuts it into batches (with length
  bucketing, each batch holds windows of one bucket; with packing, the windows that fill one engine call
  of packed rows) that a pool of worker threads (one per engine stream) runs as fast as possible.
- Server: ``issue_queries`` only enqueues and returns; workers form dynamic batches, waiting at most
  ``batch_timeout_ms`` after the oldest queued sample before running a partial batch, so queueing delay
  stays inside the latency budget (bert: 130 ms at p99). With length bucketing there is one queue per
  bucket. Which sample goes next (``server_policy``):
  ``aging`` (default): a sample that has waited ``batch_timeout_ms`` goes first (topped up with waiting
  shorter windows, which fit its length at no extra cost); otherwise a full batch goes at the shortest
  length that fills one.
  ``slack``: least slack first across buckets, slack = arrival + latency bound - now - the bucket's
  expected batch time (a running mean of this run's own batches), i.e. earliest latest-start-time: a long
  window that arrived a little later goes before a short one whose deadline is further off. A partial
  batch waits for more samples only while the most urgent sample could still wait (``batch_timeout_ms``
  at most) and finish its batch before its deadline.
  ``tokens``: one queue for every length; a free worker takes the oldest sample, then the least slack
  ones, while the tokens the engine computes for the call stay within a budget chosen from this engine's
  measured call times; it never waits for more (``harness.server_batching``).
- SingleStream: one sample per query, run at once on LoadGen's issue thread (no hand-off latency).

All three share the fault path: if the backend raises, the fault is recorded, every sample in flight
and every later sample is answered with an empty response, and ``fault_event`` is set so the runner
can end the run (LoadGen itself has no abort call; see ``harness.runner``).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np

from harness.accuracy import encode_logits_batch
from harness.backends import Backend
from harness.bucketing import bucket_index
from harness.errors import ConfigError
from harness.options import flag, require_at_least_one
from harness.qsl import SquadQSL
from harness.server_batching import TokenBudgetQueue, Waiting, call_cost, measure_token_budget

log = logging.getLogger(__name__)

SCENARIOS = ("Offline", "Server", "SingleStream")


SERVER_POLICIES = ("aging", "slack", "tokens")
DEFAULT_SERVER_POLICY = "tokens"  # docs/running.md, Server batching: the highest VALID load of every engine measured
SERVER_LATENCY_BOUND_MS = 130.0  # bert's Server bound (p99), the deadline the slack policy schedules against


@dataclass(frozen=True)
class SutOptions:
    """How the SUT feeds the backend."""

    num_workers: int | None = flag("--workers", type=int,
                                   help="SUT worker threads (default: one per engine stream, else 1)")
    batch_timeout_ms: float = flag("--batch-timeout-ms", default=10.0, type=float,
                                   help="Server: longest wait to fill a dynamic batch (default 10)")
    server_policy: str = flag("--server-policy", default=DEFAULT_SERVER_POLICY, choices=SERVER_POLICIES,
                              help="Server: which waiting samples run next. tokens (default): a free worker takes the "
                              "oldest sample and the least-slack others up to a token budget per engine call, never "
                              "waiting for more (packed rows where the model has a packed variant; engine calls of 1..8 "
                              "windows or rows; one stream per core); aging: batches of --batch-size, a sample that "
                              "waited --batch-timeout-ms first, else the shortest bucket that fills a batch; slack: as "
                              "aging, least slack to the 130 ms bound first (docs/running.md, Server batching)")
    token_budget: int | None = flag("--token-budget", type=int,
                                    help="Server, --server-policy tokens: tokens the engine computes per call, padding "
                                    "included (default: the largest whose median call takes at most 0.4 of the latency "
                                    "bound, measured before the run and recorded in run.json)")
    latency_bound_ms: float = SERVER_LATENCY_BOUND_MS  # the deadline the slack and tokens policies schedule against

    def __post_init__(self) -> None:
        require_at_least_one(self, "num_workers")
        if self.batch_timeout_ms < 0:
            raise ConfigError(f"--batch-timeout-ms must be >= 0, got {self.batch_timeout_ms}")
        if self.server_policy not in SERVER_POLICIES:
            raise ConfigError(f"--server-policy must be one of {', '.join(SERVER_POLICIES)}, got {self.server_policy!r}")
        if self.token_budget is not None and self.token_budget < 1:
            raise ConfigError(f"--token-budget must be >= 1 token, got {self.token_budget}")


def least_slack(queues: list[collections.deque], expected_s: list[float], bound_s: float,
                now: float) -> tuple[float, int]:
    """(slack, bucket) of the most urgent waiting sample: slack = arrival + bound - now - the bucket's expected
    batch time, the latest moment it can start and still meet the bound. Each queue is FIFO, so its head has
    the least slack of its bucket. At least one queue must be non-empty."""
    return min((q[0][0] + bound_s - now - expected_s[b], b) for b, q in enumerate(queues) if q)


class SystemUnderTest:
    """Base SUT: runs batches on the backend and reports them to LoadGen."""

    scenario = "abstract"

    def __init__(self, backend: Backend, qsl: SquadQSL, options: SutOptions) -> None:
        import mlperf_loadgen as lg

        self._lg = lg
        self.backend = backend
        self.qsl = qsl
        self.options = options
        self.max_seq_length = qsl.features.params.max_seq_length
        self.fault: BaseException | None = None
        self.fault_traceback: str | None = None
        self.fault_event = threading.Event()
        self._fault_lock = threading.Lock()
        # Read by the progress monitor; plain int updates are atomic enough under the GIL.
        self.issued = 0
        self.completed = 0
        self.abandoned: str | None = None  # why the run stopped computing (see abandon)
        self.batches_run = 0
        self.latencies_s: list[float] = []  # issue-to-completion per sample (Server, SingleStream)
        # Seconds spent inside backend.predict, summed over workers: the engine's share of the run. The
        # rest of the wall time x workers is harness overhead (or idle waiting for queries).
        self.engine_busy_s = 0.0
        self._busy_lock = threading.Lock()
        self.handle = lg.ConstructSUT(self._issue_queries, self._flush_queries)

    # -- LoadGen callbacks -------------------------------------------------------------------------
    def _issue_queries(self, samples: list) -> None:
        raise NotImplementedError

    def _flush_queries(self) -> None:
        """LoadGen calls this when no more queries will come; queued work still completes."""

    # -- shared machinery --------------------------------------------------------------------------
    def run_batch(self, samples: list, issued_at: list[float] | None = None) -> float | None:
        """Run one batch and report it; a backend fault answers the samples empty and is remembered.
        ``issued_at``: each sample's arrival (``time.monotonic()``), to record its latency. Returns the
        seconds spent inside the engine (None when nothing was computed)."""
        if self.fault is not None or self.abandoned is not None:
            self._complete_empty(samples)
            return None
        try:
            indices = np.fromiter((s.index for s in samples), dtype=np.int64, count=len(samples))
            input_ids, attention_mask, token_type_ids = self.qsl.gather(indices)
            started = time.perf_counter()
            start_logits, end_logits = self.backend.predict(input_ids, attention_mask, token_type_ids)
            busy = time.perf_counter() - started
            with self._busy_lock:
                self.engine_busy_s += busy
            payload = encode_logits_batch(start_logits, end_logits, self.max_seq_length)
        except Exception as exc:  # any backend failure must end the run, never hang it
            self._record_fault(exc)
            self._complete_empty(samples)
            return None
        lg = self._lg
        row_bytes = payload.strides[0]
        base = payload.ctypes.data
        responses = [
            lg.QuerySampleResponse(s.id, base + i * row_bytes, row_bytes) for i, s in enumerate(samples)
        ]
        lg.QuerySamplesComplete(responses)  # LoadGen copies the data before returning
        if issued_at is not None:
            done = time.monotonic()
            self.latencies_s.extend(done - t for t in issued_at)  # list.extend is atomic under the GIL
        self.completed += len(samples)
        self.batches_run += 1
        return busy

    def _complete_empty(self, samples: list) -> None:
        lg = self._lg
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])
        self.completed += len(samples)

    def _record_fault(self, exc: BaseException) -> None:
        with self._fault_lock:
            if self.fault is None:
                self.fault = exc
                self.fault_traceback = traceback.format_exc()
                log.error("backend fault: %s: %s; answering the remaining samples empty", type(exc).__name__, exc)
        self.fault_event.set()

    def abandon(self, reason: str) -> None:
        """Stop computing: every queued and later sample is answered empty at once, so LoadGen finishes
        without draining a queue the engine can no longer serve in time (the run is then INVALID)."""
        self.abandoned = reason

    def describe(self) -> dict:
        """How this SUT batched the run, for run.json."""
        return {"scenario": self.scenario, "batches_run": self.batches_run}

    def stop(self) -> None:
        """Stop worker threads (after LoadGen's test returned)."""

    def destroy(self) -> None:
        self.stop()
        if self.handle is not None:
            self._lg.DestroySUT(self.handle)
            self.handle = None


class _WorkerPool:
    """Daemon threads running ``target`` until ``stop``; daemon so a hard exit never waits on them."""

    def __init__(self, count: int, target, name: str) -> None:
        self.threads = [threading.Thread(target=target, name=f"{name}-{i}", daemon=True) for i in range(count)]
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float = 10.0) -> None:
        for thread in self.threads:
            thread.join(timeout)


class OfflineSut(SystemUnderTest):
    scenario = "Offline"

    def __init__(self, backend: Backend, qsl: SquadQSL, options: SutOptions) -> None:
        super().__init__(backend, qsl, options)
        self._batches: queue.SimpleQueue = queue.SimpleQueue()
        self._pool = _WorkerPool(options.num_workers, self._worker, "offline")

    def _issue_queries(self, samples: list) -> None:
        self.issued += len(samples)
        lengths = self.qsl.seq_lengths([s.index for s in samples])
        for batch in self.backend.offline_batches(samples, lengths):
            self._batches.put(batch)

    def _worker(self) -> None:
        while (batch := self._batches.get()) is not None:
            self.run_batch(batch)

    def stop(self) -> None:
        for _ in self._pool.threads:
            self._batches.put(None)
        self._pool.join()


class ServerSut(SystemUnderTest):
    scenario = "Server"

    def __init__(self, backend: Backend, qsl: SquadQSL, options: SutOptions) -> None:
        super().__init__(backend, qsl, options)
        self._buckets = backend.sequence_buckets or (self.max_seq_length,)
        # One FIFO of (arrival time, sample) per bucket, all guarded by one condition variable.
        self._queues: list[collections.deque] = [collections.deque() for _ in self._buckets]
        self._ready = threading.Condition()
        self._stopping = False
        self._timeout_s = options.batch_timeout_ms / 1000.0
        self._bound_s = options.latency_bound_ms / 1000.0
        # slack and tokens policies: expected engine seconds of a batch per bucket (running mean; 0 until one ran)
        self._expected_s = [0.0] * len(self._buckets)
        self._batch_sizes: collections.Counter = collections.Counter()
        self._tokens: TokenBudgetQueue | None = None
        self.budget_choice: dict | None = None
        if options.server_policy == "tokens":
            self._tokens = self._token_queue()
        self._pool = _WorkerPool(options.num_workers, self._worker, "server")

    def _token_queue(self) -> TokenBudgetQueue:
        """The tokens policy's queue, its budget given or chosen from this engine's measured call times."""
        width = self.max_seq_length
        cost = call_cost(self.backend, width)
        budget = self.options.token_budget
        if budget is None:
            try:
                self.budget_choice = measure_token_budget(self.backend, self.qsl.features,
                                                          workers=self.options.num_workers or 1, bound_s=self._bound_s)
            except Exception as exc:  # the engine failed before the run: the run's fault path answers every sample
                self._record_fault(exc)
                self.budget_choice = {"budget": width, "failed": f"{type(exc).__name__}: {exc}"}
                return TokenBudgetQueue(width, self.backend.max_windows_per_call, cost)
            budget = self.budget_choice["budget"]
            log.info("Server token budget: %d tokens per call (the largest whose median call took at most %.0f ms with "
                     "%d worker(s) busy)", budget, self.budget_choice["limit_ms"], self.budget_choice["workers"])
        else:
            self.budget_choice = {"budget": budget, "given": True}
        return TokenBudgetQueue(budget, self.backend.max_windows_per_call, cost, expected_s=lambda b: self._expected_s[b])

    def _issue_queries(self, samples: list) -> None:
        # Return to LoadGen at once: its issue thread must keep the arrival schedule.
        self.issued += len(samples)
        now = time.monotonic()
        if self._tokens is not None:
            lengths = self.qsl.seq_lengths([s.index for s in samples]).tolist()
            index = bucket_index(self._buckets, lengths).tolist()
            with self._ready:
                for sample, length, bucket in zip(samples, lengths, index):
                    self._tokens.put(Waiting(now, sample, int(length), bucket))
                self._ready.notify()
            return
        if len(self._buckets) > 1:
            index = bucket_index(self._buckets, self.qsl.seq_lengths([s.index for s in samples])).tolist()
        else:
            index = [0] * len(samples)
        with self._ready:
            for sample, bucket in zip(samples, index):
                self._queues[bucket].append((now, sample))
            self._ready.notify()

    def _next_batch(self) -> list | None:
        """Block until a batch is due; None once stopping and nothing is left. Call with the lock held."""
        if self._tokens is not None:  # never waits for more: a lone sample on an idle worker runs at once
            while not len(self._tokens):
                if self._stopping:
                    return None
                self._ready.wait()
            return [(entry.arrival, entry.sample) for entry in self._tokens.take()]
        batch_size = self.backend.batch_size
        while True:
            waiting = [len(q) for q in self._queues]
            if not any(waiting):
                if self._stopping:
                    return None
                self._ready.wait()
                continue
            if self._stopping:  # drain: everything left, at the length that holds it
                return self._take(max(b for b, count in enumerate(waiting) if count), batch_size)
            if self.options.server_policy == "slack":
                batch = self._least_slack_batch(waiting, batch_size)
                if batch is not None:
                    return batch
                continue
            # An overdue sample goes first (so short windows cannot starve long ones), topped up with
            # waiting windows that fit its bucket.
            oldest_bucket = min((b for b, q in enumerate(self._queues) if q), key=lambda b: self._queues[b][0][0])
            remaining = self._queues[oldest_bucket][0][0] + self._timeout_s - time.monotonic()
            if remaining <= 0:
                return self._take(oldest_bucket, batch_size)
            # Otherwise a full batch at the shortest bucket length that can fill one goes at once.
            total = 0
            for bucket, count in enumerate(waiting):
                total += count
                if total >= batch_size:
                    return self._take(bucket, batch_size)
            self._ready.wait(remaining)

    def _least_slack_batch(self, waiting: list[int], batch_size: int) -> list | None:
        """Slack policy: the batch to run now, or None after waiting (the caller re-evaluates). Call with the
        lock held."""
        now = time.monotonic()
        least, urgent = least_slack(self._queues, self._expected_s, self._bound_s, now)
        fitting = sum(waiting[: urgent + 1])
        # A full batch goes at once; a partial one waits while the urgent sample can afford it.
        wait = min(self._timeout_s - (now - self._queues[urgent][0][0]), least)
        if fitting >= batch_size or batch_size == 1 or wait <= 0:
            return self._take(urgent, batch_size, by_deadline=True)
        self._ready.wait(wait)
        return None

    def _take(self, bucket: int, batch_size: int, by_deadline: bool = False) -> list:
        """Up to ``batch_size`` (arrival, sample) pairs from buckets <= ``bucket``: oldest first, or with
        ``by_deadline`` the head of ``bucket`` first and then the rest by least slack."""
        batch = []
        candidates = list(enumerate(self._queues[: bucket + 1]))
        if by_deadline:  # the chosen bucket's head first, then the rest by least slack
            batch.append(self._queues[bucket].popleft())
        while len(batch) < batch_size:
            heads = [(b, q) for b, q in candidates if q]
            if not heads:
                break
            if by_deadline:
                b, q = min(heads, key=lambda h: h[1][0][0] - self._expected_s[h[0]])
            else:
                b, q = min(heads, key=lambda h: h[1][0][0])
            batch.append(q.popleft())
        return batch

    def _worker(self) -> None:
        while True:
            with self._ready:
                batch = self._next_batch()
                if batch:
                    self._batch_sizes[len(batch)] += 1
                if any(self._queues) or (self._tokens is not None and len(self._tokens)):
                    self._ready.notify()  # more work may be due: wake another worker
            if batch is None:
                return
            samples = [sample for _, sample in batch]
            busy = self.run_batch(samples, [arrived for arrived, _ in batch])
            if busy is not None and self.options.server_policy in ("slack", "tokens"):
                self._learn_service(samples, busy)

    def _learn_service(self, samples: list, busy_s: float) -> None:
        """Update the running mean of engine seconds per batch of the bucket this batch ran at."""
        if len(self._buckets) > 1:
            lengths = self.qsl.seq_lengths([s.index for s in samples])
            bucket = int(bucket_index(self._buckets, np.asarray([max(lengths)]))[0])
        else:
            bucket = 0
        previous = self._expected_s[bucket]
        # An exponential mean (weight 0.1): follows drift over a run without jumping on one slow batch.
        self._expected_s[bucket] = busy_s if previous == 0.0 else 0.9 * previous + 0.1 * busy_s

    def describe(self) -> dict:
        sizes = dict(sorted(self._batch_sizes.items()))
        calls = sum(sizes.values())
        return {**super().describe(), "policy": self.options.server_policy, "batch_sizes_run": sizes,
                "mean_batch": round(sum(n * c for n, c in sizes.items()) / calls, 3) if calls else None,
                "token_budget": self.budget_choice}

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        self._pool.join()


class SingleStreamSut(SystemUnderTest):
    scenario = "SingleStream"

    def _issue_queries(self, samples: list) -> None:
        self.issued += len(samples)
        self.run_batch(samples, [time.monotonic()] * len(samples))


def create_sut(scenario: str, backend: Backend, qsl: SquadQSL, options: SutOptions) -> SystemUnderTest:
    suts = {"Offline": OfflineSut, "Server": ServerSut, "SingleStream": SingleStreamSut}
    if scenario not in suts:  # looked up first: a KeyError inside a SUT's set-up is not a wrong scenario
        raise ConfigError(f"--scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
    return suts[scenario](backend, qsl, options)
