"""The packed-input variant of a QA model: several windows per row (see ``harness.packing``).

Inputs, int64 ``[batch, row]``: ``input_ids``, ``window_ids`` (1, 2, ... per window in the row, 0 for
padding), ``token_type_ids`` and ``position_ids`` (restarting at 0 in each window). The attention mask is
built inside the graph from the window ids, ``mask[b, i, j] = window_ids[b, i] == window_ids[b, j] != 0``, and passed
to the encoder as a 3-D mask, which Hugging Face BERT-family models broadcast over heads; so a token attends
only to its own window and each window's logits are those it gets alone. Building the mask in the graph
keeps the inputs at ``[batch, row]`` (a ``[batch, row, row]`` mask input would be ~1 MB per row).

Padding tokens (window id 0) attend to nothing: a fully masked softmax row is uniform, finite, and ignored, as
their logits are never read. The ONNX export goes through the one export path,
``compression.export.export_onnx(..., packed=True)`` (INT8 operators for a QAT model, as for the plain one).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

PACKED_INPUT_NAMES = ("input_ids", "window_ids", "token_type_ids", "position_ids")


class PackedQAModel(torch.nn.Module):
    """Wraps a ``*ForQuestionAnswering`` model to take packed rows; returns (start_logits, end_logits)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, input_ids: torch.Tensor, window_ids: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        same_window = window_ids.unsqueeze(2) == window_ids.unsqueeze(1)
        mask = (same_window & (window_ids.unsqueeze(1) != 0)).to(torch.long)
        out = self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids,
                         position_ids=position_ids, return_dict=True)
        return out.start_logits, out.end_logits


def synthetic_packed_batch(batch_size: int, row_length: int = 384, *, vocab_size: int = 30522,
                           seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """Packed rows for tracing the export: each row holds two synthetic windows of about half the row, a
    [PAD] gap after each (the forward argument order, as the exporter needs)."""
    from compression.synthetic import synthetic_qa_batch

    half = row_length // 2
    windows = synthetic_qa_batch(2 * batch_size, half - 1, vocab_size=vocab_size, seed=seed)
    rows = {name: torch.zeros((batch_size, row_length), dtype=torch.int64) for name in PACKED_INPUT_NAMES}
    for row in range(batch_size):
        for window_id in (1, 2):
            window = 2 * row + window_id - 1
            n = int(windows["attention_mask"][window].sum())
            offset = (window_id - 1) * half
            rows["input_ids"][row, offset:offset + n] = windows["input_ids"][window, :n]
            rows["token_type_ids"][row, offset:offset + n] = windows["token_type_ids"][window, :n]
            rows["window_ids"][row, offset:offset + n] = window_id
            rows["position_ids"][row, offset:offset + n] = torch.arange(n)
    return OrderedDict((name, rows[name]) for name in PACKED_INPUT_NAMES)
