"""4-block magnitude masks, applying masks, sparsity reports and a per-layer heat map.

"block4" follows sparseml's ``FourBlockMaskCreator`` (``mask_type: block4``): a Linear weight of shape
[out, in] is cut into blocks of 4 consecutive weights along the input dimension of each row, starting at
column 0 (blocks are aligned to multiples of 4). A block is scored by the mean of its elements' scores,
blocks are ranked (globally across all listed parameters when ``global_sparsity`` is on) and the lowest
``round(sparsity * number_of_blocks)`` are pruned: all four weights become zero, the others are kept.
This is the layout DeepSparse's sparse INT8 kernels exploit (4 consecutive input channels, matching
the 4-wide INT8 dot products of VNNI).

The trained pipeline ranks blocks with sparseml's OBS scores; the untrained benchmark model uses the
magnitude score (mean |w| of the block), which is what sparseml's magnitude pruning with block4 does.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.errors import CompressionError
from compression.recipes import canonical_param_name

BLOCK_SIZE = 4


def _weight_2d(model: torch.nn.Module, name: str) -> torch.Tensor:
    try:
        weight = model.get_parameter(name)
    except AttributeError:
        raise CompressionError(f"parameter {name!r} does not exist in the model") from None
    if weight.dim() != 2 or weight.shape[1] % BLOCK_SIZE:
        raise CompressionError(
            f"parameter {name!r} has shape {tuple(weight.shape)}: 4-block pruning needs a 2-D [out, in] "
            f"weight whose input dimension is a multiple of {BLOCK_SIZE}"
        )
    return weight


def block4_magnitude_masks(
    model: torch.nn.Module,
    param_names: list[str],
    sparsity: float,
    global_: bool = True,
) -> dict[str, torch.Tensor]:
    """0/1 masks (1 = keep) that zero ``sparsity`` of the 4-blocks of ``param_names`` by lowest mean |w|.

    With ``global_`` the ranking spans all parameters together (the recipe's ``global_sparsity: True``),
    so individual layers end up above or below the target while the total hits it exactly (to one
    block). Ties are broken by position, so the result is deterministic.
    """
    if not 0.0 <= sparsity < 1.0:
        raise CompressionError(f"sparsity must be in [0, 1), got {sparsity}")
    if not param_names:
        raise CompressionError("no parameters given to prune")
    weights = {name: _weight_2d(model, name).detach() for name in param_names}
    block_scores = {name: w.abs().reshape(-1, BLOCK_SIZE).float().mean(dim=1) for name, w in weights.items()}

    def keep_blocks(scores: torch.Tensor) -> torch.Tensor:
        num_pruned = round(sparsity * scores.numel())
        keep = torch.ones_like(scores)
        keep[torch.argsort(scores, stable=True)[:num_pruned]] = 0.0
        return keep

    if global_:
        all_keep = keep_blocks(torch.cat(list(block_scores.values())))
        block_keeps = dict(zip(block_scores, all_keep.split([s.numel() for s in block_scores.values()])))
    else:
        block_keeps = {name: keep_blocks(scores) for name, scores in block_scores.items()}
    return {
        name: block_keeps[name].repeat_interleave(BLOCK_SIZE).reshape(weights[name].shape).to(weights[name].dtype)
        for name in param_names
    }


@torch.no_grad()
def apply_masks(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Multiply each named parameter by its mask, in place."""
    for name, mask in masks.items():
        param = model.get_parameter(name)
        if param.shape != mask.shape:
            raise CompressionError(f"mask for {name!r} has shape {tuple(mask.shape)}, parameter {tuple(param.shape)}")
        param.mul_(mask.to(param.device, param.dtype))


def block4_stats(weight_out_in: np.ndarray | torch.Tensor, zero_value: float | int = 0) -> dict[str, int]:
    """Zero counts of one [out, in] weight; ``zero_value`` is the quantized zero point for INT8 weights.

    ``zeros_outside_zero_blocks`` counts zeros that are not part of an all-zero aligned 4-block: 0 for a
    pure block4 pattern. (INT8 weights can gain a few such zeros when tiny weights round to the zero
    point; they do not change which blocks are pruned.)
    """
    array = weight_out_in.detach().cpu().numpy() if isinstance(weight_out_in, torch.Tensor) else np.asarray(weight_out_in)
    if array.ndim != 2 or array.shape[1] % BLOCK_SIZE:
        raise CompressionError(f"expected a 2-D [out, in] weight with in % {BLOCK_SIZE} == 0, got shape {array.shape}")
    is_zero = array == zero_value
    zero_blocks = is_zero.reshape(-1, BLOCK_SIZE).all(axis=1)
    zeros = int(is_zero.sum())
    return {
        "weights": int(array.size),
        "zeros": zeros,
        "blocks": int(zero_blocks.size),
        "zero_blocks": int(zero_blocks.sum()),
        "zeros_outside_zero_blocks": zeros - BLOCK_SIZE * int(zero_blocks.sum()),
    }


def summarize_block_stats(per_param: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals over :func:`block4_stats` results (each may carry extra keys such as ``shape``)."""
    weights = sum(s["weights"] for s in per_param.values())
    zeros = sum(s["zeros"] for s in per_param.values())
    blocks = sum(s["blocks"] for s in per_param.values())
    zero_blocks = sum(s["zero_blocks"] for s in per_param.values())
    outside = sum(s["zeros_outside_zero_blocks"] for s in per_param.values())
    return {
        "num_params": len(per_param),
        "total_weights": weights,
        "zero_weights": zeros,
        "global_sparsity": zeros / weights if weights else 0.0,
        "block_size": BLOCK_SIZE,
        "total_blocks": blocks,
        "zero_blocks": zero_blocks,
        "block_sparsity": zero_blocks / blocks if blocks else 0.0,
        "zeros_outside_zero_blocks": outside,
        "block4_aligned": outside == 0,
    }


def sparsity_report(model: torch.nn.Module, param_names: list[str]) -> dict[str, Any]:
    """Global and per-parameter sparsity of ``param_names`` plus the aligned-4-block check.

    Keys of ``params`` are canonical names (QAT wrapper levels removed), so reports of a plain and of a
    QAT-prepared model line up. ``block4_aligned`` is True when every zero belongs to an all-zero block.
    """
    per_param: dict[str, dict[str, Any]] = {}
    for name in param_names:
        weight = _weight_2d(model, name)
        stats = block4_stats(weight)
        per_param[canonical_param_name(name)] = {
            "shape": list(weight.shape),
            **stats,
            "sparsity": stats["zeros"] / stats["weights"],
        }
    return {**summarize_block_stats(per_param), "params": per_param}


_LAYER_PARAM = re.compile(r"\.layer\.(?P<layer>\d+)\.(?P<kind>.+?)(\.weight)?$")


def plot_sparsity_heatmap(report: dict[str, Any], path: Path, title: str | None = None) -> Path:
    """Write a PNG heat map of sparsity: one row per encoder layer, one column per weight type."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    cells: dict[tuple[int, str], float] = {}
    kinds: list[str] = []
    for name, stats in report["params"].items():
        match = _LAYER_PARAM.search(name)
        if not match:
            continue  # not an encoder-layer weight; the global number still counts it
        kind = match["kind"]
        if kind not in kinds:
            kinds.append(kind)
        cells[(int(match["layer"]), kind)] = stats["sparsity"]
    if not cells:
        raise CompressionError("the sparsity report holds no encoder-layer parameters to plot")
    layers = sorted({layer for layer, _ in cells})
    grid = np.full((len(layers), len(kinds)), math.nan)
    for (layer, kind), value in cells.items():
        grid[layers.index(layer), kinds.index(kind)] = value

    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(kinds), 1.6 + 0.35 * len(layers)))
    image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(kinds)), kinds, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(layers)), [str(layer) for layer in layers], fontsize=8)
    ax.set_ylabel("encoder layer")
    for row in range(len(layers)):
        for col in range(len(kinds)):
            if not math.isnan(grid[row, col]):
                value = grid[row, col]
                ax.text(col, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=6,
                        color="black" if value > 0.6 else "white")
    fig.colorbar(image, ax=ax, label="fraction of zero weights")
    ax.set_title(
        title
        or f"Sparsity per layer and weight (global {100 * report['global_sparsity']:.2f}%, "
        f"{'4-block aligned' if report.get('block4_aligned') else 'not 4-block aligned'})",
        fontsize=9,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
