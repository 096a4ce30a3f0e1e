"""Server batching to a token budget: which waiting samples one engine call takes, and how large that budget is.

A free worker takes the oldest waiting sample, then adds the others in order of least slack (arrival minus
the expected batch time of the sample's length bucket: the one whose deadline comes first) while the tokens
the engine would compute for the batch stay within the budget; a sample that does not fit waits for the
next call (it becomes the oldest in time, so nothing starves). A lone sample on an idle machine runs at
once: batches form only from what queued while every worker was busy, so the batch grows with the load
and the latency stays that of one or two engine calls.

The tokens a batch costs are the backend's own account (:meth:`harness.backends.Backend.batch_cost`):
its windows padded to the bucket that holds the longest and the batch padded to a compiled batch size, or
the packed rows it fills. The budget is chosen from this engine's measured call times
(:func:`choose_token_budget`): the largest whose median call, with every worker busy, takes at most 0.4 of the
latency bound (a sample may wait for the call in progress, then its own, with room for a little more).

The design follows the published Intel CPU submissions' Server SUT (workers sharing one queue, batches cut
at a token budget, no batch timeout); no serving library does this for LoadGen's callbacks, hence this
module.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Candidates scanned after the oldest: a bounded look-ahead keeps one decision cheap (each candidate costs a call of
# the backend's cost, which packs rows) when a loaded run has many waiting; the decision is taken with the queue's lock
# held, on the cores the engine computes on.
LOOKAHEAD = 32
# A call of the budget may take this share of the latency bound (median over calls with every worker busy): with
# packed rows a call costs whole rows, and the share leaves room for two-row calls on a small machine
# (docs/running.md, Server batching).
BUDGET_SHARE_OF_BOUND = 0.4
CALIBRATION_REPEATS = 5  # batches timed per budget: the calls of a 2-core VM vary by tens of percent


@dataclass
class Waiting:
    """A sample in the queue: when it arrived, its real token count and its length bucket's index."""

    arrival: float
    sample: Any
    length: int
    bucket: int = 0


class TokenBudgetQueue:
    """The waiting samples, in arrival order, and the batch a free worker takes (not thread-safe: the SUT
    holds its lock around every call)."""

    def __init__(self, budget: int, max_batch: int, cost: Callable[[Sequence[int]], int],
                 expected_s: Callable[[int], float] = lambda bucket: 0.0) -> None:
        if budget < 1 or max_batch < 1:
            raise ValueError(f"token budget {budget} and batch {max_batch} must be >= 1")
        self.budget, self.max_batch, self.cost, self.expected_s = budget, max_batch, cost, expected_s
        self._waiting: collections.deque[Waiting] = collections.deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def put(self, entry: Waiting) -> None:
        self._waiting.append(entry)

    def take(self) -> list[Waiting]:
        """The next batch (empty when nothing waits): the oldest sample, then the least slack that fit."""
        if not self._waiting:
            return []
        oldest = self._waiting.popleft()
        batch, lengths = [oldest], [oldest.length]
        ahead = min(len(self._waiting), LOOKAHEAD)
        if ahead and self.max_batch > 1:
            candidates = sorted(range(ahead), key=lambda i: self._waiting[i].arrival
                                - self.expected_s(self._waiting[i].bucket))
            chosen = []
            for i in candidates:
                entry = self._waiting[i]
                if self.cost(lengths + [entry.length]) <= self.budget:
                    chosen.append(i)
                    batch.append(entry)
                    lengths.append(entry.length)
                    if len(batch) == self.max_batch:
                        break
            for i in sorted(chosen, reverse=True):
                del self._waiting[i]
        return batch


# ----------------------------------------------------------------------------------------------
# The budget, from this engine's measured call times


def budget_candidates(max_length: int, max_rows: int) -> list[int]:
    """Budgets to try: multiples of half a full-length row, up to the largest call at full length."""
    step = max(1, max_length // 2)
    return [step * k for k in range(1, 2 * max_rows + 1)]


def batch_for_budget(lengths: np.ndarray, budget: int, max_batch: int, cost: Callable[[Sequence[int]], int],
                     rng: np.random.Generator) -> list[int]:
    """Indices of the batch a loaded queue gives for ``budget``: windows drawn at random from ``lengths`` (the
    dataset's length mix) queue up, and :class:`TokenBudgetQueue` takes one batch from them, as a worker does."""
    queue = TokenBudgetQueue(budget, max_batch, cost)
    for arrival, i in enumerate(rng.permutation(len(lengths))[: LOOKAHEAD + 1].tolist()):
        queue.put(Waiting(float(arrival), i, int(lengths[i])))
    return [entry.sample for entry in queue.take()]


def choose_token_budget(run_call: Callable[[list[int]], float], lengths: np.ndarray, *, max_length: int,
                        max_rows: int, max_batch: int, cost: Callable[[Sequence[int]], int], workers: int,
                        bound_s: float, seed: int = 0) -> dict[str, Any]:
    """Time engine calls at growing budgets (``workers`` calls at once, as under load; ``run_call`` runs the
    windows of the given indices and returns its seconds) and pick the largest budget whose median call took
    at most ``BUDGET_SHARE_OF_BOUND`` of ``bound_s``. Stops at the first budget past it. Returns the choice and
    the measurements (recorded in run.json)."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(seed)
    limit_s = bound_s * BUDGET_SHARE_OF_BOUND
    measured = []
    chosen = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for budget in budget_candidates(max_length, max_rows):
            # a few batches as a loaded queue would cut them: their lengths, and so their cost, vary
            batches = [batch_for_budget(lengths, budget, max_batch, cost, rng) for _ in range(CALIBRATION_REPEATS)]
            seconds, windows = [], 0
            for batch in batches:
                run_call(batch)  # first call at this shape: compiles or warms kernels, not timed
                seconds.extend(pool.map(lambda _: run_call(batch), range(workers)))
                windows += workers * len(batch)
            costs = [cost([int(lengths[i]) for i in batch]) for batch in batches]
            measured.append({"budget": budget, "windows_mean": round(windows / len(seconds), 2),
                             "tokens_computed_max": max(costs),
                             "call_ms_median": round(1000 * float(np.median(seconds)), 2),
                             "call_ms_max": round(1000 * max(seconds), 2),
                             "windows_per_s": round(workers * windows / sum(seconds), 1)})
            if float(np.median(seconds)) > limit_s:  # the median: one slow call of a few must not decide
                break
            chosen = budget
            if all(len(batch) == max_batch and c < budget for batch, c in zip(batches, costs)):
                break  # the batches are full: larger budgets give the same ones
    if chosen is None:  # even the smallest budget's call is slow: one window per call is what remains
        chosen = budget_candidates(max_length, max_rows)[0]
    return {"budget": chosen, "limit_ms": round(1000 * limit_s, 1), "workers": workers, "max_batch": max_batch,
            "measured": measured}


def measure_token_budget(backend, features, *, workers: int, bound_s: float) -> dict[str, Any]:
    """:func:`choose_token_budget` on ``backend`` with the windows of ``features`` (a :class:`squad.features.FeatureSet`):
    what a Server run measures before it starts, and what find-target measures once for all its runs."""
    import time

    width = features.params.max_seq_length
    cost = call_cost(backend, width)

    def run_call(indices: list[int]) -> float:
        index = np.asarray(indices, dtype=np.int64)
        started = time.perf_counter()
        backend.predict(features.input_ids[index], features.input_mask[index], features.segment_ids[index])
        return time.perf_counter() - started

    return choose_token_budget(run_call, np.asarray(features.seq_lengths), max_length=width,
                               max_rows=backend.batch_size, max_batch=backend.max_windows_per_call, cost=cost,
                               workers=workers, bound_s=bound_s)


def call_cost(backend, width: int) -> Callable[[Sequence[int]], int]:
    """The tokens ``backend`` computes for one call on windows of these lengths, given as ``width``-token rows."""
    return functools.partial(backend.batch_cost, width=width)
