"""The real-accuracy experiment's Markdown table and plots, from its results (:mod:`.results`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmdline.provenance import provenance_line
from experiments.real_accuracy.config import METHOD_LABELS
from experiments.real_accuracy.results import BACKEND_NAMES, FAST_VNNI_MAX_F1_CHANGE, FAST_VNNI_MIN_SPEEDUP
from experiments.real_accuracy.rows import finish_f1_vs_sparsity

def _identity_summary(per_model: dict[str, dict[str, Any]], all_identical: str) -> str:
    differing = {k: v["differing"] for k, v in per_model.items() if not v["identical"]}
    if not differing:
        return all_identical
    return "differ for " + ", ".join(f"{k} ({n} question{'' if n == 1 else 's'})" for k, n in differing.items()) + "."


def results_table(results: dict[str, Any]) -> str:
    def cell(figures: dict[str, Any] | None, key: str, fmt: str = ".2f") -> str:
        value = (figures or {}).get(key)
        return format(value, fmt) if isinstance(value, (int, float)) else ""

    columns = ["deepsparse", "deepsparse padded", "deepsparse packed", "openvino", "openvino padded", "openvino packed",
               "onnxruntime", "onnxruntime padded", "onnxruntime packed", "deepsparse fast-VNNI",
               "deepsparse padded fast-VNNI"]
    present = [c for c in columns if any(c in (row.get("harness") or {}) for row in results["rows"])]
    header = (["model", "sparsity: encoder Linears / model (exported)", "PyTorch held-out F1 / EM"]
              + [f"harness {c}: F1 / EM / samples/s" for c in present])
    lines = ([provenance_line(results["provenance"]), ""] if results.get("provenance") else []) + [
        f"_{results['label']}_", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["rows"]:
        seeds = row.get("seeds") or {}
        if seeds.get("n", 0) > 1:
            torch_cell = (f"{seeds['f1_mean']:.2f} ± {seeds['f1_stdev']:.2f} / {seeds['exact_match_mean']:.2f} ± "
                          f"{seeds['exact_match_stdev']:.2f} (n={seeds['n']}; F1 {seeds['f1_min']:.2f}..{seeds['f1_max']:.2f})")
        elif row.get("torch"):
            torch_cell = f"{cell(row['torch'], 'f1')} / {cell(row['torch'], 'exact_match')}" + (" (n=1)" if seeds else "")
        else:
            torch_cell = ""
        exported = row.get("exported_sparsity") or {}
        parts = [(exported.get(key) or {}).get("sparsity") for key in ("encoder_linear", "model")]
        sparsity = (" / ".join("-" if part is None else f"{100 * part:.1f}%" for part in parts) if any(
            part is not None for part in parts) else f"{100 * row['sparsity']:.1f}% (PyTorch)"
            if isinstance(row.get("sparsity"), float) else "")
        harness_cells = []
        for column in present:
            figures = (row.get("harness") or {}).get(column)
            harness_cells.append(f"{cell(figures, 'f1')} / {cell(figures, 'exact_match')} / "
                                 f"{cell(figures, 'samples_per_second', '.1f')}" if figures else "")
        lines.append("| " + " | ".join([row["model"], sparsity, torch_cell, *harness_cells]) + " |")
    checks = results["checks"]
    if "int8_harness_vs_torch_f1" in checks:
        c = checks["int8_harness_vs_torch_f1"]
        has_range = c.get("torch_float64") is not None
        engines = ", ".join(f"{BACKEND_NAMES.get(b, b)} {v['harness']:.2f} ({v['difference']:+.2f}"
                            + (f", {v['outside_range']:.2f} outside the range" if has_range else "")
                            + f", within {v['tolerance']}: {'yes' if v['passed'] else 'NO'}"
                            f"{'; executed ' + v['engine_precision'] if v.get('engine_precision') else ''})"
                            for b, v in c["per_backend"].items())
        reference = (f"{c['torch']:.2f} ({c['torch_float64']:.2f} when PyTorch computes the same INT8 model in float64; "
                     "an engine is judged by its distance from that range)" if has_range else f"{c['torch']:.2f}")
        lines += ["", f"INT8 F1 in the harness (length buckets) vs the PyTorch QAT model's {reference}: {engines}."]
    float_check = checks.get("openvino_float_vs_fp32") or {}
    if float_check.get("per_model"):
        lines.append("OpenVINO on the float models (its default precision) vs ONNX Runtime FP32, F1: " + ", ".join(
            f"{model} {c['openvino']:.2f} vs {c['onnxruntime_fp32']:.2f} ({c['difference']:+.2f}"
            f"{', ' + c['engine_precision'] if c.get('engine_precision') else ''})"
            for model, c in float_check["per_model"].items())
            + f"; within {float_check['tolerance']}: {'yes' if float_check['passed'] else 'NO'}.")
    buckets = checks.get("bucketing_predictions_identical", {})
    if buckets.get("per_model"):
        lines.append("Predictions with and without length bucketing: "
                     + _identity_summary(buckets["per_model"], "identical for every model and backend."))
    packing = checks.get("packing_predictions_identical", {})
    if packing.get("per_model"):
        lines.append("Predictions with packed rows (--packing) and with length buckets: "
                     + _identity_summary(packing["per_model"], "identical for every backend."))
    vnni = results["fast_vnni_emulation"]
    if vnni.get("measured"):
        lines.append(f"NM_FAST_VNNI_EMULATION on the INT8 model: Offline x{vnni['offline_speedup']}, single-window p50 "
                     f"x{vnni.get('single_stream_speedup')}, F1 {vnni['f1_exact']:.2f} -> {vnni['f1_fast']:.2f} "
                     f"({vnni['f1_change']:+.2f}); worth enabling for this model: "
                     f"{'yes' if vnni['recommended'] else 'no'} (yes only if F1 moves by less than "
                     f"{FAST_VNNI_MAX_F1_CHANGE} and Offline is at least {FAST_VNNI_MIN_SPEEDUP}x faster).")
    lines += [""] + [f"- {note}" for note in results["notes"][1:]]
    return "\n".join(lines)


def plotted_backend(rows: list[dict[str, Any]]) -> str | None:
    """The harness backend the plot shows: DeepSparse (the product's engine) when it ran, else the first that did."""
    ran = [column for row in rows for column in (row.get("harness") or {}) if " " not in column]
    return "deepsparse" if "deepsparse" in ran else (ran[0] if ran else None)


def plot_f1_vs_sparsity(results: dict[str, Any], path: Path) -> Path | None:
    """Held-out PyTorch F1 against encoder sparsity, one line per pruning method, the seeds' mean with their range
    as error bars, the dense teacher at 0%."""
    from harness.plots import pyplot

    rows = [row for row in results["rows"] if row.get("method")]
    if not rows:
        return None
    dense = next((row for row in results["rows"] if row["model"] == "dense FP32"), None)
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(row["method"] for row in rows):
        points = sorted((row for row in rows if row["method"] == method), key=lambda row: row["sparsity"])
        x = [100 * row["sparsity"] for row in points]
        mean = [row["seeds"]["f1_mean"] for row in points]
        low = [row["seeds"]["f1_mean"] - row["seeds"]["f1_min"] for row in points]
        high = [row["seeds"]["f1_max"] - row["seeds"]["f1_mean"] for row in points]
        label = METHOD_LABELS.get(method, method) + " (seeds: " + ", ".join(
            f"{round(100 * row['sparsity'])}% n={row['seeds']['n']}" for row in points) + ")"
        ax.errorbar(x, mean, yerr=[low, high], marker="o", capsize=4, label=label)
    finish_f1_vs_sparsity(fig, ax, dense["torch"]["f1"] if dense and dense.get("torch") else None, results["label"],
                          "F1 against sparsity: mean over seeds, bars = min..max", path)
    return path


def plot_results(results: dict[str, Any], path: Path) -> Path | None:
    """Held-out F1 per model (PyTorch and harness) and the harness's Offline samples/s, buckets and padded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    backend = plotted_backend(rows)
    labels = [row["model"] for row in rows]

    def harness(row: dict[str, Any], column: str | None, key: str) -> float:
        return (((row.get("harness") or {}).get(column) or {}).get(key)) or 0.0

    torch_f1 = [(row.get("torch") or {}).get("f1") or 0.0 for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    positions = range(len(labels))
    left.bar([p - 0.2 for p in positions], torch_f1, width=0.4, label="PyTorch")
    left.bar([p + 0.2 for p in positions], [harness(row, backend, "f1") for row in rows], width=0.4,
             label=f"harness ({backend}, buckets)")
    left.set_xticks(list(positions), labels, rotation=30, ha="right")
    left.set_ylabel("held-out F1")
    left.legend()
    right.bar([p - 0.2 for p in positions], [harness(row, backend, "samples_per_second") for row in rows], width=0.4,
              label="length buckets")
    right.bar([p + 0.2 for p in positions], [harness(row, f"{backend} padded", "samples_per_second") for row in rows],
              width=0.4, label="padded to 384")
    right.set_xticks(list(positions), labels, rotation=30, ha="right")
    right.set_ylabel(f"Offline samples/s ({backend})")
    right.legend()
    fig.suptitle(results["label"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
