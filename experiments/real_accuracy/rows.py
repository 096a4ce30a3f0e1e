"""The protocol's rows, durable as they finish: one JSON file per finished part (the teacher, each pruning run,
the QAT model) in a results directory that can live in git, so that a protocol spread over several sessions
loses nothing when a machine goes (``RowStore``; ``--commit`` commits each row as it is written). The protocol
table (:func:`protocol_summary`) is always regenerated from the committed rows, and says which parts are missing.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmdline.provenance import cpu_isa, cpuinfo_field, provenance
from compression.errors import CompressionError
from experiments.real_accuracy.config import LABEL, METHOD_LABELS, RealAccuracyConfig

log = logging.getLogger(__name__)

ROWS_SUBDIR = "rows"
PROTOCOL_JSON = "protocol.json"
PROTOCOL_TABLE = "protocol.md"
PROTOCOL_PLOT = "protocol_f1_vs_sparsity.png"
ENGINES_SUBDIR = "engines"  # the engine comparison of the QAT's oBERT model (run.py's final phase)
EXPORTED_SPARSITY_TOLERANCE = 0.01  # a row's sparsity read from its export against the part's target
WALL_TIME_FILE = "wall_time.json"


class RowError(CompressionError):
    """A row that would put a wrong figure into the committed results."""


@dataclass(frozen=True)
class Part:
    """One part of the protocol: the teacher, a pruning run or the QAT of one pruned model."""

    kind: str  # "teacher" | "prune" | "qat"
    method: str | None = None
    sparsity: float = 0.0
    seed: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "teacher":
            return "teacher"
        return f"{self.kind}-{self.method}-{round(100 * self.sparsity)}pct-seed{self.seed}"

    @property
    def label(self) -> str:
        if self.kind == "teacher":
            return "dense teacher"
        what = f"{METHOD_LABELS[self.method]} {round(100 * self.sparsity)}%"
        return f"{what} INT8 (QAT)" if self.kind == "qat" else what


def protocol_parts(config: RealAccuracyConfig) -> list[Part]:
    """Every part of the protocol, in the order it runs: the teacher, every pruning run (the first sparsity for all
    seeds and methods, then the next), the QAT after the runs at its sparsity."""
    parts = [Part("teacher")]
    for sparsity in sorted(config.sparsities):
        for seed in config.seeds_for(sparsity):
            parts += [Part("prune", method, sparsity, seed) for method in config.methods]
        if sparsity == config.quantize_sparsity:
            parts.append(Part("qat", "obs", sparsity, config.seeds[0]))
    return parts


@contextmanager
def wall_clock(path: Path) -> Iterator[None]:
    """Add this invocation's seconds (and the CPU it ran on) to ``path``, also when it is interrupted: a part's
    wall time is the sum over the sessions that worked on it."""
    started = time.perf_counter()
    try:
        yield
    finally:
        ledger = json.loads(path.read_text()) if path.is_file() else {"seconds": 0.0, "invocations": []}
        seconds = round(time.perf_counter() - started, 1)
        ledger["seconds"] = round(ledger["seconds"] + seconds, 1)
        ledger["invocations"].append({"seconds": seconds, "ended_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                                      "cpu_model": cpuinfo_field("model name"), "isa": cpu_isa()})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ledger, indent=1) + "\n")


def wall_time(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def exported_encoder_sparsity(row: dict[str, Any]) -> float | None:
    """The sparsity of the encoder Linears read from the row's export; a dense model, which names no pruned
    Linears, by its zeros over every parameter."""
    exported = row.get("exported_sparsity") or {}
    encoder = (exported.get("encoder_linear") or {}).get("sparsity")
    if encoder is None and row.get("kind") == "teacher":
        return (exported.get("model") or {}).get("sparsity")
    return encoder


def check_row(part: Part, row: dict[str, Any]) -> None:
    """Refuse a row whose sparsity, read from its export, is not its part's target, or whose students did not see
    every training article: such a row would compare methods at different sparsities or on different data."""
    encoder = exported_encoder_sparsity(row)
    if encoder is None:
        raise RowError(f"row {part.name}: no sparsity read from its export (verify.json)")
    if abs(encoder - part.sparsity) > EXPORTED_SPARSITY_TOLERANCE:
        raise RowError(f"row {part.name}: its export is {encoder:.2%} sparse over the encoder Linears, the part asks "
                       f"for {part.sparsity:.0%} (tolerance {EXPORTED_SPARSITY_TOLERANCE:.0%}); not written")
    coverage = row.get("coverage")
    if part.kind != "teacher" and (not coverage or coverage.get("articles_missing")
                                   or coverage.get("articles") != coverage.get("articles_available")):
        missing = (coverage or {}).get("articles_missing")
        raise RowError(f"row {part.name}: its training windows do not cover every training article "
                       f"(missing: {missing if missing is not None else 'no coverage recorded'}); not written")
    if (row.get("heldout") or {}).get("f1") is None:
        raise RowError(f"row {part.name}: no held-out F1")


class RowStore:
    """The committed rows of one results directory (``<dir>/rows/<part>.json``)."""

    def __init__(self, directory: Path, *, commit: bool = False) -> None:
        self.directory = Path(directory)
        self.commit = commit

    def path(self, part: Part) -> Path:
        return self.directory / ROWS_SUBDIR / f"{part.name}.json"

    def get(self, part: Part, fingerprint: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The part's row, if written with this fingerprint (a row of other settings is not this protocol's)."""
        path = self.path(part)
        if not path.is_file():
            return None
        row = json.loads(path.read_text())
        if fingerprint is not None and row.get("fingerprint") != json.loads(json.dumps(fingerprint, default=str)):
            return None
        return row

    def rows(self) -> dict[str, dict[str, Any]]:
        folder = self.directory / ROWS_SUBDIR
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}

    def write(self, part: Part, row: dict[str, Any]) -> Path:
        """Check and write the part's row (atomically), then commit it when asked to."""
        row = {"part": part.name, "kind": part.kind, "method": part.method, "target_sparsity": part.sparsity,
               "seed": part.seed, "label": LABEL, **row, "provenance": provenance()}
        check_row(part, row)
        path = self.path(part)
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_suffix(".json.tmp")
        staged.write_text(json.dumps(row, indent=1, default=str) + "\n")
        os.replace(staged, path)
        log.info("row %s written: %s (held-out F1 %.2f)", part.name, path, row["heldout"]["f1"])
        return path

    def commit_results(self, message: str) -> None:
        """Commit the results directory, and only it (``git commit --only``), when asked to; a failure is a
        warning: the files are written and a later commit takes them."""
        if not self.commit:
            return
        where = str(self.directory.resolve())
        try:
            top = subprocess.run(["git", "-C", where, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                                 check=True, timeout=30).stdout.strip()
            subprocess.run(["git", "-C", top, "add", "--", where], capture_output=True, text=True, check=True,
                           timeout=60)
            done = subprocess.run(["git", "-C", top, "commit", "--only", "-m", message, "--", where],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as error:
            log.warning("could not commit %s: %s", where, error)
            return
        if done.returncode != 0 and "nothing to commit" not in done.stdout + done.stderr:
            log.warning("could not commit %s: %s", where, (done.stderr or done.stdout).strip().splitlines()[-1:])


# ----------------------------------------------------------------------------------------------
# The protocol table, from the rows


def _f1_statistics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    f1 = [row["heldout"]["f1"] for row in rows]
    em = [row["heldout"]["exact_match"] for row in rows]
    return {"seeds": [row["seed"] for row in rows], "f1": f1, "n": len(f1), "f1_mean": statistics.fmean(f1),
            "f1_stdev": statistics.stdev(f1) if len(f1) > 1 else None, "f1_min": min(f1), "f1_max": max(f1),
            "exact_match_mean": statistics.fmean(em), "exact_match_stdev": statistics.stdev(em) if len(em) > 1 else None,
            "encoder_sparsity": [exported_encoder_sparsity(row) for row in rows],
            "validation_f1": [(row.get("validation") or {}).get("f1") for row in rows],
            "harness_f1": [(row.get("harness") or {}).get("f1") for row in rows]}


def _difference(obs: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, Any] | None:
    """oBERT minus a baseline in held-out F1, paired by seed (a seed draws the same training windows for both)."""
    by_seed = {row["seed"]: row["heldout"]["f1"] for row in baseline}
    paired = {row["seed"]: row["heldout"]["f1"] - by_seed[row["seed"]] for row in obs if row["seed"] in by_seed}
    if not paired:
        return None
    values = list(paired.values())
    return {"seeds": list(paired), "values": values, "mean": statistics.fmean(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else None, "min": min(values), "max": max(values)}


def protocol_summary(store: RowStore, config: RealAccuracyConfig) -> dict[str, Any]:
    """Every committed row, mean and spread over seeds per method and sparsity, oBERT minus each magnitude baseline
    (paired by seed), and the protocol parts with no row yet."""
    rows = store.rows()
    parts = protocol_parts(config)
    missing = [part.name for part in parts if part.name not in rows]
    groups: dict[str, dict[str, Any]] = {}
    for sparsity in sorted(config.sparsities):
        for method in config.methods:
            done = [rows[p.name] for p in parts if p.kind == "prune" and p.method == method and p.sparsity == sparsity
                    and p.name in rows]
            if done:
                groups[f"{method}|{sparsity}"] = {"method": method, "sparsity": sparsity,
                                                  "label": Part("prune", method, sparsity).label, **_f1_statistics(done)}
    differences = {}
    for sparsity in sorted(config.sparsities):
        obs = [rows[p.name] for p in parts if p.kind == "prune" and p.method == "obs" and p.sparsity == sparsity
               and p.name in rows]
        for method in config.methods:
            if method == "obs":
                continue
            baseline = [rows[p.name] for p in parts if p.kind == "prune" and p.method == method
                        and p.sparsity == sparsity and p.name in rows]
            difference = _difference(obs, baseline)
            if difference is not None:
                differences[f"obs-{method}|{sparsity}"] = {"sparsity": sparsity, "baseline": method, **difference}
    return {"label": LABEL, "provenance": provenance(), "results_dir": str(store.directory),
            "parts": [part.name for part in parts], "missing": missing, "complete": not missing,
            "teacher": rows.get("teacher"), "qat": next((rows[p.name] for p in parts if p.kind == "qat"
                                                         and p.name in rows), None),
            "groups": groups, "differences": differences, "rows": rows}


def protocol_table(summary: dict[str, Any]) -> str:
    from cmdline.provenance import provenance_line

    def pm(mean: float, stdev: float | None) -> str:
        return f"{mean:.2f}" + (f" ± {stdev:.2f}" if stdev is not None else "")

    lines = [provenance_line(summary["provenance"]), "", f"_{summary['label']}_", ""]
    if summary["missing"]:
        lines += [f"**INCOMPLETE**: {len(summary['missing'])} of {len(summary['parts'])} protocol parts have no "
                  f"committed row yet: {', '.join(summary['missing'])}.", ""]
    lines += ["| model | seeds | encoder sparsity (exported) | held-out F1 (mean ± sd; per seed) | held-out EM | "
              "validation F1 | harness F1 (ONNX Runtime) | training articles covered | wall time |", "|" + "---|" * 9]

    def one(row: dict[str, Any], label: str) -> str:
        coverage = row.get("coverage") or {}
        wall = (row.get("wall_time") or {}).get("seconds")
        return (f"| {label} | {row.get('seed') if row.get('seed') is not None else '-'} | "
                f"{100 * exported_encoder_sparsity(row):.1f}% | {row['heldout']['f1']:.2f} | "
                f"{row['heldout']['exact_match']:.2f} | {(row.get('validation') or {}).get('f1', float('nan')):.2f} | "
                f"{_harness_cell(row)} | {coverage.get('articles', 'all')} | {_minutes(wall)} |")

    if summary["teacher"]:
        lines.append(one(summary["teacher"], "dense teacher"))
    for group in summary["groups"].values():
        rows = [summary["rows"][Part("prune", group["method"], group["sparsity"], seed).name] for seed in group["seeds"]]
        coverage = sorted({(row.get("coverage") or {}).get("articles") for row in rows})
        walls = [(row.get("wall_time") or {}).get("seconds") for row in rows]
        lines.append(
            f"| {group['label']} | {', '.join(map(str, group['seeds']))} | "
            f"{', '.join(f'{100 * s:.1f}%' for s in group['encoder_sparsity'])} | "
            f"{pm(group['f1_mean'], group['f1_stdev'])} ({', '.join(f'{v:.2f}' for v in group['f1'])}) | "
            f"{pm(group['exact_match_mean'], group['exact_match_stdev'])} | "
            f"{', '.join(f'{v:.2f}' for v in group['validation_f1'] if v is not None)} | "
            f"{'; '.join(_harness_cell(row) for row in rows)} | {', '.join(map(str, coverage))} | "
            f"{', '.join(_minutes(w) for w in walls)} |")
    if summary["qat"]:
        qat = summary["qat"]
        lines.append(one(qat, Part("qat", qat["method"], qat["target_sparsity"], qat["seed"]).label))
    if summary["differences"]:
        lines += ["", "oBERT minus each magnitude baseline, held-out F1, paired by seed (mean ± sd over seeds; per seed):"]
        for difference in summary["differences"].values():
            lines.append(f"- {round(100 * difference['sparsity'])}%, oBERT - {METHOD_LABELS[difference['baseline']]}: "
                         f"{difference['mean']:+.2f}" + (f" ± {difference['stdev']:.2f}" if difference["stdev"] is not None
                                                           else " (one seed)")
                         + " (" + ", ".join(f"seed {s}: {v:+.2f}" for s, v in zip(difference["seeds"],
                                                                                    difference["values"])) + ")")
    lines += ["", "- held-out: 8 SQuAD v1.1 dev articles never trained on or chosen by; validation: 4 other articles",
              "- harness F1: `python -m harness run` on the row's FP32 (or INT8) ONNX export, ONNX Runtime, length "
              "buckets: it should agree with PyTorch's",
              "- wall time: the sum over the sessions that trained the part (their CPUs are in each row's JSON)"]
    return "\n".join(line for line in lines if line is not None)


def _harness_cell(row: dict[str, Any]) -> str:
    harness = row.get("harness") or {}
    if harness.get("f1") is None:
        return "-"
    return f"{harness['f1']:.2f} ({harness['f1'] - row['heldout']['f1']:+.2f})"


def _minutes(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def plot_protocol(summary: dict[str, Any], path: Path) -> Path | None:
    """Held-out F1 against the exported encoder sparsity, one colour per method, every seed a point, the seeds'
    mean joined by a line; the dense teacher as a dashed line."""
    from harness.plots import pyplot

    if not summary["groups"]:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(group["method"] for group in summary["groups"].values()):
        groups = sorted((g for g in summary["groups"].values() if g["method"] == method), key=lambda g: g["sparsity"])
        line = ax.plot([100 * statistics.fmean(g["encoder_sparsity"]) for g in groups], [g["f1_mean"] for g in groups],
                       marker="_", markersize=14, label=f"{METHOD_LABELS[method]} (mean over seeds)")[0]
        for group in groups:
            ax.scatter([100 * s for s in group["encoder_sparsity"]], group["f1"], color=line.get_color(), s=22,
                       alpha=0.8)
    teacher = summary.get("teacher")
    finish_f1_vs_sparsity(fig, ax, teacher["heldout"]["f1"] if teacher else None, summary["label"],
                          "F1 against sparsity: every seed a point", path)
    return path


def finish_f1_vs_sparsity(fig, ax, teacher_f1: float | None, label: str, title: str, path: Path) -> None:
    """The dense teacher's line, the axes' labels, the legend and the label on top of an F1-against-sparsity plot,
    saved to ``path``."""
    from harness.plots import save_plot

    if teacher_f1 is not None:
        ax.axhline(teacher_f1, color="black", linewidth=0.8, linestyle="--", label=f"dense teacher {teacher_f1:.2f}")
    ax.set_xlabel("4-block sparsity of the encoder Linears (%)")
    ax.set_ylabel("held-out F1 (PyTorch)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(label, fontsize=8)
    fig.tight_layout()
    save_plot(fig, path)


def write_protocol_results(store: RowStore, config: RealAccuracyConfig) -> dict[str, Any]:
    """Regenerate the protocol's JSON, table and plot in the results directory from its committed rows."""
    summary = protocol_summary(store, config)
    summary["table_markdown"] = protocol_table(summary)
    store.directory.mkdir(parents=True, exist_ok=True)
    (store.directory / PROTOCOL_JSON).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    (store.directory / PROTOCOL_TABLE).write_text(summary["table_markdown"] + "\n")
    plot_protocol(summary, store.directory / PROTOCOL_PLOT)
    return summary
