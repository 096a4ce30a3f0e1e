"""Sequence packing: several short windows in one fixed-length row, so that (almost) no token is padding.

Length bucketing still pads each window up to its bucket (mean 217 tokens computed per window with the
default four buckets, against 178 real ones on SQuAD v1.1 dev). Packing places whole windows one after
another in rows of ``row_length`` tokens; a packed model variant (``compression.packed``) takes, instead of
a 2-D attention mask, each token's *window id* (1, 2, ... for the windows of the row, 0 for padding) and
position ids that restart at 0 in every window. Its attention is block-diagonal (a token sees only its
own window), so each window's logits are those it gets alone, up to float rounding.

No inference library packs encoder inputs for us (the packing helpers of Hugging Face's trainers target
training collators and flash-attention kernels, not ONNX inference), hence this small module.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PackedRow:
    """The windows of one row: feature indices and each one's first token in the row."""

    windows: tuple[int, ...]
    offsets: tuple[int, ...]


# One padding token after every window. MobileBERT's embedding layer concatenates each token's embedding with
# its neighbours' (trigram input): alone, a window's last token has a [PAD] on its right, and its first token
# a zero vector on its left. A [PAD] between packed windows gives both the same neighbours, as [PAD]'s
# embedding is zero (padding_idx). BERT has no such layer; the gap costs it one token per window.
WINDOW_GAP = 1


def pack_windows(indices: np.ndarray, lengths: np.ndarray, row_length: int, gap: int = WINDOW_GAP) -> list[PackedRow]:
    """Best-fit decreasing: windows longest first, each into the row with the least room that still holds it
    (a new row when none does). ``lengths`` are the windows' real token counts; each window is followed by
    ``gap`` padding tokens (the last one of a row may end at the row's end). Rows in the order they were
    opened (the first hold the longest windows). Deterministic for the same input; O(n log n) with the rows'
    free room kept sorted, since the Offline SUT packs a whole query (10,833 windows) in LoadGen's issue call."""
    indices, lengths = np.asarray(indices), np.asarray(lengths)
    if indices.shape != lengths.shape:
        raise ValueError(f"{indices.size} indices but {lengths.size} lengths")
    if lengths.size and (int(lengths.max()) > row_length or int(lengths.min()) < 1):
        raise ValueError(f"window lengths must be 1..{row_length}, got {int(lengths.min())}..{int(lengths.max())}")
    order = np.argsort(-lengths, kind="stable")
    by_room: list[tuple[int, int]] = []  # (room left counting a gap after every window, row), sorted
    members: list[list[tuple[int, int]]] = []  # (feature index, length + gap) per row
    capacity = row_length + gap
    for i in order.tolist():
        length = int(lengths[i]) + gap
        position = bisect.bisect_left(by_room, (length, -1))
        if position < len(by_room):
            room, row = by_room.pop(position)
        else:
            room, row = capacity, len(members)
            members.append([])
        members[row].append((int(indices[i]), length))
        bisect.insort(by_room, (room - length, row))
    rows = []
    for row in members:
        offsets = np.cumsum([0] + [length for _, length in row[:-1]]).tolist()
        rows.append(PackedRow(windows=tuple(w for w, _ in row), offsets=tuple(int(o) for o in offsets)))
    return rows


def packed_inputs(rows: list[PackedRow], input_ids: np.ndarray, token_type_ids: np.ndarray, lengths: np.ndarray,
                  row_length: int) -> dict[str, np.ndarray]:
    """The packed model's inputs for ``rows``. ``input_ids``/``token_type_ids``/``lengths`` are indexed by
    feature index (the QSL's arrays)."""
    count = len(rows)
    ids = np.zeros((count, row_length), dtype=np.int64)
    types = np.zeros((count, row_length), dtype=np.int64)
    window_ids = np.zeros((count, row_length), dtype=np.int64)
    positions = np.zeros((count, row_length), dtype=np.int64)
    for r, row in enumerate(rows):
        for window_id, (window, offset) in enumerate(zip(row.windows, row.offsets), start=1):
            n = int(lengths[window])
            ids[r, offset:offset + n] = input_ids[window, :n]
            types[r, offset:offset + n] = token_type_ids[window, :n]
            window_ids[r, offset:offset + n] = window_id
            positions[r, offset:offset + n] = np.arange(n)
    return {"input_ids": ids, "window_ids": window_ids, "token_type_ids": types, "position_ids": positions}


def unpack_logits(rows: list[PackedRow], start: np.ndarray, end: np.ndarray, lengths: np.ndarray,
                  out_start: np.ndarray, out_end: np.ndarray) -> None:
    """Copy each window's real tokens' logits from the packed rows' ``start``/``end`` into row ``window`` of
    ``out_start``/``out_end`` (indexed by window, as ``lengths``); their other positions are left as they are
    (the caller fills them, as the bucketed backend leaves positions past a bucket to the accuracy encoder)."""
    for r, row in enumerate(rows):
        for window, offset in zip(row.windows, row.offsets):
            n = int(lengths[window])
            out_start[window, :n] = start[r, offset:offset + n]
            out_end[window, :n] = end[r, offset:offset + n]


def rows_per_call(rows: list[PackedRow], rows_in_call: int) -> list[list[PackedRow]]:
    """Consecutive groups of ``rows_in_call`` rows (the engine's compiled batch); the last may be shorter."""
    return [rows[i:i + rows_in_call] for i in range(0, len(rows), rows_in_call)]


def padding_share(rows: list[PackedRow], lengths: np.ndarray, row_length: int) -> float:
    """Fraction of the rows' tokens that are padding."""
    if not rows:
        return 0.0
    real = sum(int(lengths[w]) for row in rows for w in row.windows)
    return 1.0 - real / (len(rows) * row_length)
