"""Length bucketing: run each window at the shortest of a few compiled sequence lengths that holds it.

Most SQuAD v1.1 dev windows are far shorter than 384 tokens (median 164; 87% fit in 256), so padding
every window to 384 mostly computes on padding. With bucketing the backend holds one engine per length
in ``buckets`` and each batch runs at the smallest bucket that holds its longest window. The logits of
the real positions are the same as at full length (padding is masked out of attention and every other
op is per-token), which ``harness.backends.bucketed`` checks on the model before a run starts.

This module is the scheduling side: choosing buckets, and grouping samples so that a batch holds
windows of one bucket. The engines live in ``harness.backends.bucketed``.
"""

from __future__ import annotations

import numpy as np

from harness.errors import ConfigError

# Chosen by measurement on the dev-set length distribution and DeepSparse's per-length speed (docs/performance.md,
# Bucket set and batch per bucket; `python -m benchmarks --sections buckets`). Each bucket is one more engine to
# compile, so a few well-placed lengths beat many.
DEFAULT_BUCKETS: tuple[int, ...] = (128, 192, 256, 384)


def parse_buckets(spec: str | None) -> tuple[int, ...] | None:
    """``--buckets`` value: comma-separated lengths, or ``off``/``none`` (None = no bucketing)."""
    if spec is None or spec.strip().lower() in ("off", "none"):
        return None
    try:
        values = tuple(int(part) for part in spec.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--buckets {spec!r}: expected comma-separated sequence lengths like 128,192,256,384") from None
    if not values:  # an unset shell variable (--buckets "$B") must not turn bucketing off without a word
        raise ConfigError(f"--buckets {spec!r}: no sequence lengths given; expected e.g. 128,192,256,384 "
                          "(--no-bucketing or --buckets off turns bucketing off)")
    return validate_buckets(values)


def validate_buckets(values: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    if not values:
        raise ConfigError("--buckets: no sequence lengths given")
    if any(v < 8 for v in values):
        raise ConfigError(f"--buckets {','.join(map(str, values))}: every length must be >= 8 tokens")
    return tuple(sorted(set(int(v) for v in values)))


def buckets_for(buckets: tuple[int, ...] | None, max_seq_length: int) -> tuple[int, ...] | None:
    """The bucket set used with ``max_seq_length``-token windows; the window length itself is always a
    bucket, so every window fits. Raises when a bucket is longer than the windows."""
    if buckets is None:
        return None
    too_long = [b for b in buckets if b > max_seq_length]
    if too_long:
        raise ConfigError(
            f"--buckets {','.join(map(str, buckets))}: {too_long} exceed the window length {max_seq_length}"
        )
    return tuple(sorted(set(buckets) | {max_seq_length}))


def bucket_index(buckets: tuple[int, ...], lengths: np.ndarray) -> np.ndarray:
    """Index of the smallest bucket holding each length (lengths must not exceed the last bucket)."""
    lengths = np.asarray(lengths)
    index = np.searchsorted(np.asarray(buckets), lengths, side="left")
    if lengths.size and int(index.max()) >= len(buckets):
        raise ValueError(f"a window of {int(lengths.max())} tokens is longer than the largest bucket {buckets[-1]}")
    return index


def bucket_shares(buckets: tuple[int, ...], lengths: np.ndarray) -> np.ndarray:
    """Share of the windows (of these ``lengths``) that each bucket serves."""
    owner = bucket_index(buckets, lengths)
    return np.bincount(owner, minlength=len(buckets)) / owner.size


def batch_bucket(attention_mask: np.ndarray, buckets: tuple[int, ...]) -> int:
    """The smallest bucket holding every window of a batch (up to its last non-padding position)."""
    used = np.flatnonzero(np.asarray(attention_mask).any(axis=0))
    length = int(used[-1]) + 1 if used.size else 1
    position = int(np.searchsorted(np.asarray(buckets), length, side="left"))
    if position == len(buckets):
        raise ValueError(f"a window of {length} tokens is longer than the largest bucket {buckets[-1]}")
    return buckets[position]


def bucket_batches(
    items: list, lengths: np.ndarray, buckets: tuple[int, ...] | None, batch_size: int
) -> list[list]:
    """Cut ``items`` into batches of at most ``batch_size``; with buckets, each batch holds items of one
    bucket only (keeping their order within a bucket), so no batch runs longer than it needs."""
    if not buckets:
        return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    index = bucket_index(buckets, lengths)
    batches: list[list] = []
    for bucket in range(len(buckets)):
        members = [items[i] for i in np.flatnonzero(index == bucket)]
        batches.extend(members[i : i + batch_size] for i in range(0, len(members), batch_size))
    return batches


def padded_tokens_per_window(lengths: np.ndarray, buckets: tuple[int, ...] | None, max_seq_length: int) -> float:
    """Mean tokens computed per window (its bucket's length) if every batch were bucket-pure."""
    if not buckets:
        return float(max_seq_length)
    return float(np.asarray(buckets)[bucket_index(buckets, lengths)].mean())
