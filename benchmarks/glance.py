"""The README's "Results at a glance" from one invocation of ``scripts/results_at_a_glance.sh``: a Markdown table of
its full-length runs (one per scenario, then Offline accuracy) with LoadGen's verdict, and two plots.

    python -m benchmarks.glance RUNS_DIR OUT_DIR [--command "the invocation"]

Read from each run directory's ``run.json`` and ``sample_latencies_ms.npy``, so the figures are the runs' own.
Runs with LoadGen overrides are the probes that chose the offered loads; they appear only in the Server plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cmdline.provenance import provenance, provenance_line
from harness.plots import finish_plot, pyplot
from harness.rundir import RUN_JSON
from harness.run_record import SAMPLE_LATENCIES_FILE
from harness.scenarios import SERVER_LATENCY_BOUND_MS

TABLE_FILE = "glance.md"
LATENCY_PLOT = "glance_latency.png"
SERVER_PLOT = "glance_server_probes.png"


def load_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run of the invocation, oldest first, each with its directory."""
    runs = []
    # in the order they were run: a run directory's name has whole seconds, and short runs share one
    for run_json in sorted(Path(runs_dir).glob(f"*/{RUN_JSON}"), key=lambda path: path.stat().st_mtime_ns):
        record = json.loads(run_json.read_text())
        runs.append({**record, "run_dir": str(run_json.parent)})
    if not runs:
        raise SystemExit(f"{runs_dir}: no run directories with a {RUN_JSON}")
    return runs


def _utc(stamp: str | None) -> str:
    """run.json's ISO time (``2026-12-06T16:50:42+0000``) as ``2026-12-06 16:50:42``."""
    return (stamp or "?").replace("T", " ").split("+")[0]


def is_probe(run: dict[str, Any]) -> bool:
    return bool((run.get("settings") or {}).get("overrides"))


def result_cell(run: dict[str, Any]) -> str:
    r, latency = run.get("results") or {}, (run.get("results") or {}).get("latency_ms") or {}
    if run["mode"] == "accuracy":
        accuracy = run.get("accuracy") or {}
        return f"F1 {accuracy.get('f1', float('nan')):.2f}, EM {accuracy.get('exact_match', float('nan')):.2f}"
    if run["scenario"] == "Offline":
        return f"**{r['samples_per_second']:.2f} samples/s**"
    if run["scenario"] == "Server":
        return (f"**{r['target_qps']} QPS** offered, {r['samples_per_second']:.2f} completed/s; p99 "
                f"{latency['p99']:.1f} ms (bound {SERVER_LATENCY_BOUND_MS:.0f})")
    return (f"**p90 {latency['p90']:.2f} ms** (p50 {latency['p50']:.2f}; early-stopping p90 "
            f"{r.get('early_stopping_p90_latency_ms') or float('nan'):.2f})")


def table(runs: list[dict[str, Any]], record: dict[str, Any]) -> str:
    full = [run for run in runs if not is_probe(run)]
    first = full[0] if full else runs[0]
    machine, backend, model = first.get("machine") or {}, first.get("backend") or {}, first.get("model") or {}
    dataset = first.get("dataset") or {}
    lines = [provenance_line(record), "",
             f"Engine {backend.get('backend')} {backend.get('version', '')} ({backend.get('precision') or model.get('precision')}, "
             f"length buckets {','.join(map(str, backend.get('sequence_buckets') or [])) or 'none'}); model `{model.get('name')}`"
             f"{' (UNTRAINED: speed valid, accuracy meaningless)' if model.get('trained') is False else ''}; "
             f"{machine.get('memory_gb')} GB; "
             f"{first['qsl'].get('features')} features of "
             f"{'SQuAD v1.1 dev (official files)' if dataset.get('official') else dataset.get('source')}.", "",
             "| scenario | mode | batch x streams | result | LoadGen | duration | run |", "|---|---|---|---|---|---:|---|"]
    for run in full:
        r = run.get("results") or {}
        validity = r.get("validity") or ("-" if run["mode"] == "accuracy" else "?")
        if r.get("invalid_reason"):
            validity += f" ({r['invalid_reason']})"
        engine = run.get("backend") or {}
        lines.append(f"| {run['scenario']} | {run['mode']} | {engine.get('batch_size')} x {engine.get('num_streams') or 1} | "
                     f"{result_cell(run)} | {validity} | "
                     f"{run.get('duration_s', 0):.0f} s | `{Path(run['run_dir']).name}` |")
    probes = [run for run in runs if is_probe(run)]
    if probes:
        lines += ["", "Offered loads chosen by short probes of the same invocation (LoadGen overrides, not results): " +
                  "; ".join(f"{run['scenario']} {_probe_figure(run)}" for run in probes) + "."]
    return "\n".join(lines) + "\n"


def _probe_figure(run: dict[str, Any]) -> str:
    r = run.get("results") or {}
    if run["scenario"] == "Server":
        return f"{r.get('target_qps')} QPS -> p99 {r['latency_ms']['p99']:.1f} ms"
    if run["scenario"] == "Offline":
        return f"{r['samples_per_second']:.1f} samples/s"
    return f"p50 {r['latency_ms']['p50']:.2f} ms"


def plot_latencies(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Per-sample latency CDFs of the full-length Server and SingleStream runs, with the Server bound."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for run in runs:
        latencies_file = Path(run["run_dir"]) / SAMPLE_LATENCIES_FILE
        if is_probe(run) or run["mode"] != "performance" or run["scenario"] == "Offline" or not latencies_file.is_file():
            continue
        latencies = np.sort(np.load(latencies_file))
        label = (f"Server at {run['results'].get('target_qps')} QPS" if run["scenario"] == "Server" else "SingleStream")
        ax.plot(latencies, np.arange(1, len(latencies) + 1) / len(latencies), label=f"{label} ({len(latencies)} samples)")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axvline(SERVER_LATENCY_BOUND_MS, color="black", linewidth=0.8)
    ax.axhline(0.99, color="grey", linewidth=0.5, linestyle=":")
    return Path(finish_plot(fig, ax, path, "per-sample latency, issue to completion (ms)", "fraction of samples",
                        "Latency, full-length runs (line: Server bound 130 ms at p99)"))


def plot_server(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Server p99 against offered load: the probes and the full-length run."""
    servers = [run for run in runs if run["scenario"] == "Server" and run["mode"] == "performance"]
    if not servers:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for probe, marker, label in ((True, "o", "60 s probes"), (False, "*", "full-length run")):
        points = sorted((run["results"]["target_qps"], run["results"]["latency_ms"]["p99"])
                        for run in servers if is_probe(run) == probe)
        if points:
            ax.plot(*zip(*points), marker=marker, linestyle="-" if probe else "", markersize=6 if probe else 14,
                    label=label)
    ax.axhline(SERVER_LATENCY_BOUND_MS, color="black", linewidth=0.8)
    return Path(finish_plot(fig, ax, path, "offered load (QPS)", "p99 latency (ms)", "Server: p99 vs offered load"))


def write_glance(runs_dir: Path, out_dir: Path, command: str | None = None) -> dict[str, Path | None]:
    runs = load_runs(runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the runs' own time span, commit and machine, not this report's
    machine = runs[0].get("machine") or {}
    record = {**provenance(command), "time_utc": f"{_utc(runs[0].get('started'))} to {_utc(runs[-1].get('finished'))}",
              "commit": (runs[0].get("harness") or {}).get("commit"), "cpu_model": machine.get("cpu_model"),
              "isa": machine.get("isa"), "logical_cpus": machine.get("logical_cpus")}
    files = {"table": out_dir / TABLE_FILE, "latency_plot": plot_latencies(runs, out_dir / LATENCY_PLOT),
             "server_plot": plot_server(runs, out_dir / SERVER_PLOT)}
    text = table(runs, record)
    text += "".join(f"\n![{name}]({path.name})\n" for name, path in files.items() if name != "table" and path)
    files["table"].write_text(text)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.glance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--command", default=None, help="the invocation that made the runs (for the provenance line)")
    args = parser.parse_args(argv)
    files = write_glance(args.runs_dir, args.out_dir, args.command)
    print(files["table"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
