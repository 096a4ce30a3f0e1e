"""The packed-input variant of a QA model: several windows per row (see ``harness.packing``).

Inputs, int64 ``[batch, row]``: ``input_ids``, ``segment_ids`` (1, 2, ... per window in the row, 0 for
padding), ``token_type_ids`` and ``position_ids`` (restarting at 0 in each window). The attention mask is
built inside the graph from the segments, ``mask[b, i, j] = segment[b, i] == segment[b, j] != 0``, and passed
to the encoder as a 3-D mask, which Hugging Face BERT-family models broadcast over heads; so a token attends
only to its own window and each window's logits are those it gets alone. Building the mask in the graph
keeps the inputs at ``[batch, row]`` (a ``[batch, row, row]`` mask input would be ~1 MB per row).

Padding tokens (segment 0) attend to nothing: a fully masked softmax row is uniform, finite, and ignored, as
their logits are never read.
"""

from __future__ import annotations

from pathlib import Path

import torch

PACKED_INPUT_NAMES = ("input_ids", "segment_ids", "token_type_ids", "position_ids")


class PackedQAModel(torch.nn.Module):
    """Wraps a ``*ForQuestionAnswering`` model to take packed rows; returns (start_logits, end_logits)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        same_window = segment_ids.unsqueeze(2) == segment_ids.unsqueeze(1)
        mask = (same_window & (segment_ids.unsqueeze(1) != 0)).to(torch.long)
        out = self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids,
                         position_ids=position_ids, return_dict=True)
        return out.start_logits, out.end_logits


def export_packed_onnx(model: torch.nn.Module, onnx_path: Path, *, row_length: int = 384, opset: int = 14) -> Path:
    """Export the packed variant of an FP32 ``model`` with ``torch.onnx`` (TorchScript exporter); the
    dynamic axis is the batch, rows are ``row_length`` tokens."""
    onnx_path = Path(onnx_path)
    wrapper = PackedQAModel(model).eval()
    example = (torch.ones(1, row_length, dtype=torch.long), torch.ones(1, row_length, dtype=torch.long),
               torch.zeros(1, row_length, dtype=torch.long), torch.arange(row_length).unsqueeze(0))
    with torch.no_grad():
        torch.onnx.export(wrapper, example, str(onnx_path), input_names=list(PACKED_INPUT_NAMES),
                          output_names=["start_logits", "end_logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in (*PACKED_INPUT_NAMES, "start_logits", "end_logits")})
    return onnx_path
