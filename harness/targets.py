"""``find-target``: this machine's LoadGen targets, found by running them, written as a user.conf.

- Offline: one pass over every feature; ``target_qps`` is the samples/s it ran at (LoadGen sizes its one query
  to target_qps x min_duration x 1.1, so a run at that speed lasts the 600 s minimum).
- SingleStream: a short run; ``target_latency`` (LoadGen's *expected* latency, from which it pre-generates
  queries: a run that outpaces them ends INVALID) is half the median latency measured.
- Server: short runs bisect the offered load between the highest that LoadGen called VALID and the lowest it
  did not, starting from the Offline speed (no Server load can be higher), until the two are within
  ``tolerance`` of each other; then full-length runs confirm it: lower after each that does not hold (2, then 4,
  then 8 tolerances below it), then halfway up towards the lowest refused load while the two are more than
  ``tolerance`` apart, at most ``CONFIRM_ATTEMPTS`` runs (a short run misses a queue that grows over minutes); a
  target none confirmed is written as such. A full-length run stops as soon as it can no longer be VALID (more
  samples over the bound than p99 allows of the queries it will issue): a refused load costs minutes, not ten; such
  a run ends its process (LoadGen cannot be stopped), and the search goes on in a new one (:func:`search_in_child`).

LoadGen's own FindPeakPerformance mode also bisects Server loads, from short steps judged by their own p99, to 0.1
QPS and with no confirmation; on a fake Server of known capacity its peak was one a full-length run did not hold
(docs/running.md, Finding this machine's targets).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

log = logging.getLogger(__name__)

CONFIRM_ATTEMPTS = 4
CONFIRM_STEP = 2  # tolerances down after the first full-length run that did not hold; doubled after each further one
CONFIRM_MAX_STEP = 8
SINGLE_STREAM_EXPECTED_SHARE = 0.5  # of the measured median: generating more queries than run costs nothing
MIN_SERVER_QPS = 0.1
QPS_ROUNDING = 1e-3  # every load run is rounded to this


@dataclass
class Probe:
    """One short (or the confirming full-length) Server run at an offered load."""

    target_qps: float
    valid: bool
    p99_ms: float | None = None
    completed_qps: float | None = None
    reason: str | None = None
    run_dir: str | None = None
    full_length: bool = False


@dataclass
class ServerSearch:
    """The bisection's probes and its result (``target_qps``: the highest VALID load, None if none was)."""

    probes: list[Probe] = field(default_factory=list)
    target_qps: float | None = None
    confirmed: bool | None = None  # None: no confirmation run was asked for

    def as_dict(self) -> dict[str, Any]:
        return {"target_qps": self.target_qps, "confirmed": self.confirmed, "probes": [asdict(p) for p in self.probes]}


def within_tolerance(lower: float, upper: float, tolerance: float) -> bool:
    """Whether two loads are within ``tolerance`` of the upper one, allowing for the loads' rounding: a gap of
    exactly one tolerance in decimals can exceed it in binary floats."""
    return upper - lower <= tolerance * upper + QPS_ROUNDING


def bisect_server_load(run_probe: Callable[[float], Probe], upper_qps: float, *, tolerance: float = 0.05,
                       first_share: float = 0.5, max_probes: int = 12) -> ServerSearch:
    """Bisect the offered load between the highest VALID probe (``lo``) and the lowest INVALID one (``hi``,
    at first ``upper_qps``), from ``first_share`` of it, until ``hi - lo <= tolerance x hi``."""
    if upper_qps <= 0:
        raise ConfigError(f"the Server search needs an upper bound above 0 QPS, got {upper_qps}")
    search = ServerSearch()
    lo, hi = 0.0, float(upper_qps)
    qps = first_share * hi
    while len(search.probes) < max_probes:
        probe = run_probe(round(qps, 3))
        search.probes.append(probe)
        log.info("Server probe at %.2f QPS: %s (p99 %s ms%s)", probe.target_qps, "VALID" if probe.valid else "INVALID",
                 probe.p99_ms, f"; {probe.reason}" if probe.reason and not probe.valid else "")
        if probe.valid:
            lo = max(lo, probe.target_qps)
        else:
            hi = min(hi, probe.target_qps)
        if within_tolerance(lo, hi, tolerance) or hi < MIN_SERVER_QPS:
            break
        qps = (lo + hi) / 2
    search.target_qps = lo or None
    return search


def confirm_server_load(search: ServerSearch, run_full: Callable[[float], Probe], tolerance: float) -> ServerSearch:
    """Full-length runs from the search's load (module docstring): the target is the highest load one of them held;
    none held, it is one step below the last refused and ``confirmed`` is False."""
    qps, step = search.target_qps, CONFIRM_STEP
    held: float | None = None
    refused: float | None = None
    for _ in range(CONFIRM_ATTEMPTS):
        if qps is None:
            break
        probe = run_full(round(qps, 3))
        probe.full_length = True
        search.probes.append(probe)
        if probe.valid:
            held = max(held or 0.0, probe.target_qps)
        else:
            refused = probe.target_qps if refused is None else min(refused, probe.target_qps)
        if held is None:
            qps, step = refused * (1 - step * tolerance), min(2 * step, CONFIRM_MAX_STEP)
        elif refused is None or within_tolerance(held, refused, tolerance):
            break
        else:
            qps = (held + refused) / 2
    search.confirmed = held is not None
    # never report a load a full-length run refused
    search.target_qps = held if held is not None else None if qps is None else round(qps, 3)
    return search


def server_probe(run_server: Callable[[Any, bool], dict], qps: float, *, full: bool,
                 probe_duration_ms: int) -> Probe:
    """One Server run at ``qps``: short (``probe_duration_ms``, any query count), or full length (the conf's duration
    and query count) stopped once it can no longer be VALID. ``run_server(overrides, abort_when_invalid)`` runs it
    and returns its record, or raises :class:`harness.errors.RunStopped` for a stopped run."""
    from harness.errors import RunStopped
    from harness.loadgen_settings import LoadGenOverrides

    overrides = (LoadGenOverrides(target_qps=qps) if full else
                 LoadGenOverrides(target_qps=qps, min_duration_ms=probe_duration_ms, min_query_count=1))
    try:
        record = run_server(overrides, full)
    except RunStopped as stopped:  # INVALID whatever the rest of the run would have done
        return Probe(qps, False, reason=f"stopped early: {stopped.reason}", run_dir=stopped.run_dir, full_length=full)
    results = record["results"]
    return Probe(qps, results["validity"] == "VALID", (results.get("latency_ms") or {}).get("p99"),
                 results.get("samples_per_second"), results.get("invalid_reason"), record["run_dir"], full_length=full)


def user_conf_text(targets: dict[str, Any], provenance_line: str, server_confirmed: bool | None = None) -> str:
    """A user.conf of the targets found (only the keys found; LoadGen keeps mlperf.conf's for the rest)."""
    lines = ["# This machine's LoadGen targets for bert, found by `python -m harness find-target` (docs/running.md,",
             "# Finding this machine's targets). " + provenance_line]
    if server_confirmed is False:
        lines.append("# Server: NOT confirmed: every full-length run tried was INVALID (find_target.md); the value is "
                     "one step below the last of them, not run")
    if targets.get("Offline") is not None:
        lines.append(f"bert.Offline.target_qps = {targets['Offline']:g}")
    if targets.get("Server") is not None:
        lines.append(f"bert.Server.target_qps = {targets['Server']:g}")
    if targets.get("SingleStream") is not None:
        lines.append(f"bert.SingleStream.target_latency = {targets['SingleStream']:g}")
    return "\n".join(lines) + "\n"


def write_user_conf(path: Path, text: str, *, overwrite: bool) -> Path:
    """Write ``text`` to ``path``; an existing file (the repository's user.conf, say) only with ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"--output {path}: the file exists; it is kept (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def plot_search(search: ServerSearch, path: Path, title: str) -> Path | None:
    """p99 against offered load for every probe, VALID and INVALID apart, the 130 ms bound as a line."""
    from harness.plots import finish_plot, pyplot

    points = [p for p in search.probes if p.p99_ms is not None]
    if not points:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for valid, marker, label in ((True, "o", "VALID"), (False, "x", "INVALID")):
        chosen = [p for p in points if p.valid == valid]
        if chosen:
            ax.scatter([p.target_qps for p in chosen], [p.p99_ms for p in chosen], marker=marker, label=label)
    for p in points:
        if p.full_length:
            ax.annotate("full length", (p.target_qps, p.p99_ms), fontsize=7, xytext=(4, 4), textcoords="offset points")
    # a run stopped once it could no longer be VALID has no p99: its load as a line, so the refusal is seen
    for i, p in enumerate(p for p in search.probes if p.p99_ms is None):
        ax.axvline(p.target_qps, color="tab:red", linestyle=":", linewidth=1,
                   label="full length, stopped early (no p99)" if i == 0 else None)
    ax.axhline(130, color="grey", linewidth=0.8, linestyle="--", label="bound 130 ms")
    p99s = [p.p99_ms for p in points]
    if min(p99s) > 0 and max(p99s) > 10 * min(p99s):  # a lost run's seconds would flatten the points near the bound
        ax.set_yscale("log")
    finish_plot(fig, ax, path, "offered load (QPS)", "p99 latency (ms)", title, legend_size=8)
    return path


def write_report(out_dir: Path, targets: dict[str, Any], details: dict[str, Any], provenance: dict[str, Any]) -> Path:
    """``find_target.json`` and ``find_target.md`` beside the user.conf."""
    from cmdline.provenance import provenance_line

    record = {"provenance": provenance, "targets": targets, "details": details,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (out_dir / "find_target.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    lines = [provenance_line(provenance), "", "| scenario | target | how |", "|---|---|---|"]
    if "Offline" in details:
        d = details["Offline"]
        lines.append(f"| Offline | target_qps {targets['Offline']:g} | {d['samples_per_second']:.2f} samples/s over "
                     f"{d['samples']} samples ({d['validity']}) |")
    if "SingleStream" in details:
        d = details["SingleStream"]
        lines.append(f"| SingleStream | target_latency {targets['SingleStream']:g} ms | half the median {d['p50_ms']:.2f} "
                     f"ms (p90 {d['p90_ms']:.2f} ms) |")
    if "Server" in details:
        d = details["Server"]
        full = [p for p in d["probes"] if p["full_length"]]
        lines.append(f"| Server | target_qps {targets.get('Server')} | {len(d['probes']) - len(full)} short probes"
                     + (f", full-length confirmation {'VALID' if d['confirmed'] else 'INVALID'}" if full else "")
                     + " |")
        lines += ["", "| offered QPS | VALID | p99 ms | completed QPS | run | reason |", "|---|---|---|---|---|---|"]
        for p in d["probes"]:
            lines.append(f"| {p['target_qps']:g}{' (full length)' if p['full_length'] else ''} | "
                         f"{'yes' if p['valid'] else 'no'} | {p['p99_ms']} | {p['completed_qps']} | {p['run_dir']} | "
                         f"{p['reason'] or ''} |")
    (out_dir / "find_target.md").write_text("\n".join(lines) + "\n")
    return out_dir / "find_target.md"


# ----------------------------------------------------------------------------------------------
# The command


SCENARIO_ORDER = ("Offline", "SingleStream", "Server")  # Offline first: its speed bounds the Server search


def find_targets(args) -> int:
    """``python -m harness find-target``: run the searches asked for, write the user.conf and the report.

    Each scenario's search runs in its own child process (:func:`search_in_child`): LoadGen marks every test of a
    process that read the conf files more than once with "Multiple conf files are used" (harness/isolated.py)."""
    from cmdline.provenance import provenance, provenance_line
    from harness.rundir import check_runs_root
    from harness.run_inputs import engine_by_cpu, engine_for_model, load_dataset_and_features
    from harness.runner import RunRequest
    from harness.loadgen_settings import LoadGenOverrides

    scenarios = [s for s in SCENARIO_ORDER if s in (args.scenario or SCENARIO_ORDER)]
    check_runs_root(Path(args.runs_dir))
    out_dir = Path(args.runs_dir) / time.strftime("find-target-%Y%m%d-%H%M%S")
    output = Path(args.output) if args.output else out_dir / "user.conf"
    if output.exists() and not args.overwrite:  # said now, not after half an hour of runs
        raise ConfigError(f"--output {output}: the file exists; it is kept (pass --overwrite to replace it)")
    if "Server" in scenarios and "Offline" not in scenarios and not args.upper_qps:
        raise ConfigError("find-target --scenario Server needs an upper bound: search Offline too, or give "
                          "--upper-qps (this machine's Offline samples/s)")
    engine, choice = engine_by_cpu(args, scenarios)
    dataset, features = load_dataset_and_features(args, count=args.count)
    engine, choice, model = engine_for_model(args, engine, choice, dataset, scenarios)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for scenario in scenarios:
        backend_options, sut_options = engine.for_scenario(scenario, features.params.max_seq_length, model)
        request = RunRequest(
            scenario=scenario, mode="performance", backend=engine.backend, model=model, features=features,
            dataset=dataset, backend_options=backend_options, sut_options=sut_options,
            mlperf_conf=Path(args.mlperf_conf), user_conf=Path(args.user_conf), runs_root=out_dir / scenario.lower(),
            overrides=LoadGenOverrides(), progress=not args.no_progress, backend_choice=choice.as_dict())
        search = {"probe_duration_ms": args.probe_duration_ms, "tolerance": args.tolerance,
                  "confirm": not args.no_confirm, "upper_qps": args.upper_qps or targets.get("Offline"),
                  "plot": str(out_dir / "server_p99_vs_load.png"), "progress": str(out_dir / PROGRESS_FILE),
                  "plot_title": f"Server search: {engine.backend}\n{model.label}",  # two lines: the name is long
                  "verbose": bool(getattr(args, "verbose", False))}
        found = search_in_child(request, search, Path(args.cache_dir) / "features")
        targets[scenario], details[scenario] = found["target"], found["detail"]

    record = provenance()
    details["engine"] = {"backend": engine.backend, "choice": choice.as_dict(), "model": str(model.onnx_path),
                         "server_policy": engine.sut.server_policy}
    confirmed = (details.get("Server") or {}).get("confirmed")
    write_user_conf(output, user_conf_text(targets, provenance_line(record), confirmed), overwrite=args.overwrite)
    report = write_report(out_dir, targets, details, record)
    for scenario in scenarios:
        note = {True: " (confirmed by a full-length run)", False: " (NOT confirmed by a full-length run)"}.get(
            confirmed) if scenario == "Server" else ""
        print(f"{scenario}: {targets.get(scenario)}{note or ''}")
    print(f"user.conf: {output} (run with --user-conf {output}); report: {report}")
    if "Server" in targets and targets["Server"] is None:
        print("Server: no offered load was VALID", flush=True)
        return 1
    if confirmed is False:
        return 1
    return 0


PROGRESS_FILE = "server_probes.jsonl"  # the Server search's runs so far, and its token budget, one JSON per line


def search_in_child(request, search: dict[str, Any], feature_cache_dir: Path) -> dict[str, Any]:
    """One scenario's search (:func:`search_scenario`) in a child process; its ``{"target", "detail"}``.

    LoadGen has no abort call, so a full-length run stopped once it can no longer be VALID ends its process
    (harness.runner). The Server search then goes on in a new child: each child appends its runs to
    ``search["progress"]``, the parent adds the stopped one, and the next child replays them (the search is
    deterministic given its runs' outcomes) before running the next load."""
    import tempfile

    from harness.errors import RunStopped
    from harness.isolated import child_result, request_to_spec, run_module

    with tempfile.TemporaryDirectory(prefix="obert-find-target-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps({"run": request_to_spec(request, feature_cache_dir), "search": search}))
        for _ in range(CONFIRM_ATTEMPTS + 1):  # at most every confirmation run stopped, then the one that finishes
            process, outcome = run_module("harness.targets", [str(spec_path), str(result_path)],
                                          result_path=result_path)
            stopped = (stopped_run(Path(request.runs_root), Path(search["progress"]))
                       if outcome is None and process.returncode == RunStopped.exit_status else None)
            if stopped is None:
                break
            log.info("Server run at %.2f QPS stopped (%s); the search goes on in a new process", stopped.target_qps,
                     stopped.reason)
            append_progress(Path(search["progress"]), {"probe": asdict(stopped)})
    return child_result(outcome, "found", f"the {request.scenario} search", request.runs_root)


def append_progress(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")


def read_progress(path: Path) -> tuple[dict[tuple[float, bool], Probe], dict | None]:
    """The runs a search made so far by (load, full length), and its token budget (None: not measured yet)."""
    probes: dict[tuple[float, bool], Probe] = {}
    budget = None
    if path.is_file():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "probe" in entry:
                probe = Probe(**entry["probe"])
                probes[(probe.target_qps, probe.full_length)] = probe
            if "token_budget" in entry:
                budget = entry["token_budget"]
    return probes, budget


def replaying(run_probe: Callable[[float, bool], Probe], progress: Path) -> Callable[..., Probe]:
    """``run_probe(qps, full)`` with the runs already in ``progress`` answered from it and each new one added."""
    done = read_progress(progress)[0]

    def probe(qps: float, full: bool = False) -> Probe:
        if (qps, full) not in done:
            done[(qps, full)] = replace(run_probe(qps, full), full_length=full)  # the key it is found by again
            append_progress(progress, {"probe": asdict(done[(qps, full)])})
        return done[(qps, full)]

    return probe


def stopped_run(runs_root: Path, progress: Path) -> Probe | None:
    """The full-length run a child was stopped in: the newest run under ``runs_root`` not yet in ``progress``,
    if its run.json says it was stopped; None otherwise."""
    known = {Path(p.run_dir).resolve() for p in read_progress(progress)[0].values() if p.run_dir}
    runs = sorted((d for d in runs_root.glob("*") if (d / "run.json").is_file() and d.resolve() not in known),
                  key=lambda d: d.name)
    if not runs:
        return None
    record = json.loads((runs[-1] / "run.json").read_text())
    if record.get("status") != "stopped":
        return None
    qps = record["settings"]["overrides"]["target_qps"]
    return Probe(qps, False, reason=f"stopped early: {record['results'].get('invalid_reason')}", run_dir=str(runs[-1]),
                 full_length=True)


def search_scenario(request, search: dict[str, Any]) -> dict[str, Any]:
    """The child's work: one engine and one reading of the conf files for every run of ``request.scenario``'s
    search (``request``: its first run, overrides aside); returns ``{"target": ..., "detail": {...}}``."""
    from harness.backends import create_backend
    from harness.loadgen_settings import LoadGenOverrides, conf_test_settings
    from harness.runner import execute_run

    scenario = request.scenario
    conf = conf_test_settings(scenario, "performance", mlperf_conf=request.mlperf_conf, user_conf=request.user_conf)
    backend = create_backend(request.backend, request.model, request.backend_options, progress=request.progress)

    def run(overrides: LoadGenOverrides, abort_when_invalid: bool = False) -> dict:
        return execute_run(replace(request, overrides=overrides, abort_when_invalid=abort_when_invalid),
                           backend=backend, conf_settings=conf)

    try:
        if scenario == "Offline":
            # one pass over every feature: LoadGen issues max(min_query_count, target_qps x duration x 1.1)
            record = run(LoadGenOverrides(target_qps=1, min_duration_ms=1000, min_query_count=len(request.features)))
            results = record["results"]
            return {"target": round(results["samples_per_second"], 2),
                    "detail": {"samples_per_second": results["samples_per_second"],
                               "samples": record.get("samples_completed"), "validity": results["validity"],
                               "run_dir": record["run_dir"]}}
        if scenario == "SingleStream":
            # an expected latency far below any real one: LoadGen never runs out of pre-generated queries
            record = run(LoadGenOverrides(min_duration_ms=search["probe_duration_ms"], min_query_count=64,
                                          expected_latency_ms=0.5))
            latency = record["results"]["latency_ms"]
            return {"target": round(SINGLE_STREAM_EXPECTED_SHARE * latency["p50"], 2),
                    "detail": {"p50_ms": latency["p50"], "p90_ms": latency["p90"], "run_dir": record["run_dir"]}}

        progress = Path(search["progress"])
        budget = read_progress(progress)[1]  # measured by an earlier child of this search, if one was stopped
        if budget is None and request.sut_options.server_policy == "tokens" and request.sut_options.token_budget is None:
            # measured once, for every run of the search: each run measuring its own, the budget swung between one
            # and two packed rows from run to run and the bisection followed the noise
            from harness.scenarios import SERVER_LATENCY_BOUND_MS
            from harness.server_batching import measure_token_budget

            budget = measure_token_budget(backend, request.features, workers=request.sut_options.num_workers or 1,
                                          bound_s=SERVER_LATENCY_BOUND_MS / 1000)
            append_progress(progress, {"token_budget": budget})
        if budget is not None:
            request = replace(request, sut_options=replace(request.sut_options, token_budget=budget["budget"]))

        probe = replaying(lambda qps, full: server_probe(run, qps, full=full,
                                                         probe_duration_ms=search["probe_duration_ms"]), progress)

        found = bisect_server_load(probe, search["upper_qps"], tolerance=search["tolerance"])
        if search["confirm"]:
            found = confirm_server_load(found, lambda qps: probe(qps, full=True), search["tolerance"])
        plot_search(found, Path(search["plot"]), search["plot_title"])
        return {"target": found.target_qps,
                "detail": {**found.as_dict(), "upper_qps": search["upper_qps"], "token_budget": budget}}
    finally:
        backend.close()


def main(argv: list[str]) -> int:
    """``python -m harness.targets SPEC.json RESULT.json``: the child side of :func:`search_in_child`."""
    from harness.isolated import request_from_spec, write_outcome
    from harness.logging_config import configure_logging

    spec = json.loads(Path(argv[0]).read_text())
    configure_logging(verbose=spec["search"]["verbose"])
    return write_outcome(Path(argv[1]), "found", lambda: search_scenario(request_from_spec(spec["run"]),
                                                                          spec["search"]))


if __name__ == "__main__":
    from harness.interrupts import run_child_main

    run_child_main(main)
