"""The benchmark suite's report: ``report.md`` (tables and targets) and PNG plots."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from benchmarks.openvino_profile import profile_lines
from benchmarks.scaleout import two_host_report_lines
from cmdline.provenance import provenance_line
from harness.plots import finish_plot, pyplot, save_plot
from harness.run_record import SAMPLE_LATENCIES_FILE

TARGET_TEXT = {
    "offline_samples_per_s_full": ("Offline samples/s over all features", ">= {:.0f}", "{:.2f}"),
    "ours_vs_v3_design_offline": ("Offline: ours / Neural Magic v3.0 design (buckets 64..384, single stream, batch 64), "
                                  "same model", ">= {:.2f}x", "{:.2f}x"),
    "ours_vs_published_offline": ("Offline: ours / published design, same model", ">= {:.1f}x", "{:.2f}x"),
    "ours_vs_ort_fp32_dense_24l": ("Offline: ours / ONNX Runtime FP32 dense MobileBERT-24", ">= {:.0f}x", "{:.2f}x"),
    "harness_overhead_pct": ("Harness overhead, share of engine time (in-run, Offline over all features)", "<= {:.0f}%", "{:.2f}%"),
    "server_vs_offline": ("Server QPS at p99 <= 130 ms / Offline samples/s", ">= {:.2f}", "{:.3f}"),
    "server_vs_queueing_bound": ("Server QPS at p99 <= 130 ms / the batch-1 FIFO queueing bound from the same run's "
                                 "service times", ">= {:.2f}", "{:.3f}"),
    "peak_rss_mb_full_offline": ("Peak RSS, Offline over all features", "<= {:.0f} MB", "{:.0f} MB"),
}


DESIGN_NAMES = {"published-offline": "v2.1 design (padded 384)", "published-v3-offline": "v3.0 design (buckets, batch 64)",
                "published-server": "v2.1 design"}

SERIES_COLORS = ("tab:green", "tab:blue", "tab:red", "tab:purple", "tab:orange")


def write_report(results: dict, out_dir: Path) -> Path:
    s = results["summary"]
    machine = results.get("machine", {})
    lines = [
        "# Benchmark suite",
        "",
        *([provenance_line(results["provenance"]), ""] if results.get("provenance") else []),
        f"Machine: {machine.get('cpu_model')}, {machine.get('logical_cpus', machine.get('cpus', '?'))} logical CPUs, "
        f"{machine.get('memory_gb', '?')} GB; software: " +
        ", ".join(f"{k} {v}" for k, v in (results.get("software") or {}).items() if v),
        f"Features: the first {results['samples']} of {results['features']} windows of "
        f"{'SQuAD v1.1 dev' if results['official_dataset'] else 'the built-in SAMPLE (not comparable)'}; "
        "models are UNTRAINED benchmark models (speed valid, accuracy meaningless).",
    ]
    if results.get("reused_from"):
        lines.append(f"Jobs marked reused were measured by an earlier invocation: {', '.join(results['reused_from'])}.")
    lines += target_lines(s)
    headline = s.get("offline_headline") or {}
    if headline.get("configuration"):
        lines += ["", f"Headline Offline configuration (the faster of ours over every feature): "
                  f"{headline['configuration']}; packed rows vs length buckets: {headline.get('packed_vs_bucketed')}x."]
    lines += ["", "## Offline", "",
              "| job | test | backend | model | seq | batch | streams | samples | samples/s | harness overhead in-run "
              "| bare samples/s, median (spread) | vs bare loop, median "
              "| GMAC/sample | % of peak | peak RSS MB |",
              "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s["offline"]:
        bare = (f"{r['bare_samples_per_s']:.2f} (spread {r['bare_spread_pct']:.1f}%)" if "bare_samples_per_s" in r else "")
        overhead = (f"{r['overhead_pct']:+.2f}% (rounds {', '.join(f'{x:+.1f}' for x in r['overhead_rounds_pct'])})"
                    if "overhead_pct" in r else "")
        seq = (f"buckets {','.join(map(str, r['buckets']))} (mean {r['mean_tokens_computed']:.0f})" if r["buckets"] else
               f"packed rows of 384, {r['windows_per_row']} windows/row (mean {r['mean_tokens_computed']:.0f})"
               if r.get("windows_per_row") else "384")
        lines.append(
            f"| {r['job']} | {r['test']} | {r['backend']} | {r['model']} | {seq} | {r['batch_size']} | {r.get('streams', 1)} | "
            f"{r['samples']} | {r['samples_per_s']:.2f} | "
            f"{'' if r.get('engine_overhead_pct') is None else format(r['engine_overhead_pct'], '+.2f') + '%'} | "
            f"{bare} | {overhead} | {r['gmacs_per_sample'] or ''} | "
            f"{r['roofline_pct'] if r['roofline_pct'] is not None else ''} {r['precision'] or ''} | {r['peak_rss_mb']} |")
    lines += ["", f"Peak compute (for '% of peak'): {s['peak']['how']}. MACs per sample count only non-zero "
              "weights and the tokens actually computed (the bucket length, 384 when padded, or a window's share of "
              "the packed rows, whose attention over the whole row is then undercounted); "
              "see `benchmarks/macs.py`.", "",
              "Harness overhead in-run: LoadGen's duration x SUT workers, less the time spent inside the engine's "
              "`predict`, over that engine time, from the same run (`harness.run_record.harness_overhead_pct`). "
              "vs bare loop: the same features through the engine alone, alternated with the harness run "
              "(bare, harness, bare, ...); each harness run against the mean of the bare loops around it, "
              "median of the rounds (each listed), so a drifting machine shows as spread, not as overhead.", ""]
    if s["server"]:
        lines += ["## Server (bert target latency 130 ms at p99)", "",
                  "| job | design | batch | streams | target QPS | completed samples/s | queries | p50 ms | p90 ms | p99 ms | engine ms "
                  "per batch | latency bound met | early stopping met | LoadGen result |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
        for r in s["server"]:
            lines.append(f"| {r['job']} | {r['design']} | {r['batch_size']} | {r.get('streams', 1)} | {r['target_qps']} | {r['completed_samples_per_s']} | "
                         f"{r.get('query_count')} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r.get('engine_ms_per_batch') or ''} | "
                         f"{'yes' if r.get('latency_bound_met') else 'no'} | {'yes' if r.get('early_stopping_met') else 'no'} | "
                         f"{r['validity']} |")
        lines += ["", "A point counts when LoadGen's latency constraint held (p99 <= 130 ms). Sweep points are short, "
                  "too few queries for LoadGen's early-stopping estimate, so their overall result can read INVALID "
                  "for that alone; confirm the chosen target with a full run (`./run_server.sh`)."]
        best = s["server_best"]
        lines += [""]
        for job, row in best.items():
            lines.append(f"- highest valid target QPS, {job}: " + (f"{row['target_qps']} (p99 {row['p99_ms']} ms)"
                                                                     if row else "none of the points tried"))
        lines.append("")
    if s.get("singlestream"):
        lines += ["## SingleStream", "", "| job | streams | queries | p50 ms | p90 ms | p99 ms | early-stopping p90 ms "
                  "| LoadGen result |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in s["singlestream"]:
            lines.append(f"| {r['job']} | {r['streams']} | {r['queries']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | "
                         f"{r['early_stopping_p90_ms']} | {r['validity']} |")
        lines.append("")
    lines += engines_section(s.get("engines"))
    lines += profile_lines(s.get("openvino_profile"))
    vnni = s.get("vnni")
    if vnni:
        lines += ["## DeepSparse fast VNNI emulation (section `vnni`)", "",
                  "`NM_FAST_VNNI_EMULATION=1` (`--fast-vnni-emulation`) against DeepSparse's default INT8 emulation on "
                  "this CPU without VNNI; same model, features and settings, adjacent jobs. Its F1 cost needs a trained "
                  "model: compression's real-accuracy experiment.", "",
                  "| | default emulation | fast emulation | speed-up of the fast emulation |", "|---|---:|---:|---:|",
                  f"| Offline samples/s ({vnni['offline_samples']} features) | {vnni['offline_default']} | "
                  f"{vnni['offline_fast']} | {vnni['offline_speedup']}x |"]
        for key in ("p50_ms", "p90_ms"):
            lines.append(f"| SingleStream {key[:3]} ms | {vnni[f'singlestream_{key}_default']} | "
                         f"{vnni[f'singlestream_{key}_fast']} | {vnni[f'singlestream_{key}_speedup']}x |")
        lines.append("")
    if s.get("server_bounds"):
        lines += ["## Server: what an ideal batch-1 FIFO SUT could sustain (queueing model)", "",
                  "Poisson arrivals (as LoadGen issues them), the dev set's window-length mix, service times as "
                  "below, zero SUT overhead; highest load with simulated p99 <= 130 ms (`benchmarks/queueing.py`).",
                  "", "| service time | servers (streams) | median ms per bucket | mean ms | max QPS at p99 <= 130 ms | utilisation "
                  "| / Offline |", "|---|---:|---|---:|---:|---:|---:|"]
        for r in s["server_bounds"]:
            per_bucket = ", ".join(f"{n}: {ms}" for n, ms in r["bucket_service_ms"].items())
            lines.append(f"| {r['service']} | {r['servers']} | {per_bucket} | {r['mean_service_ms']} | {r['max_qps']} | "
                         f"{r['utilisation']} | {r['vs_offline']} |")
        lines.append("")
        if s.get("server_vs_in_run_bound") is not None:
            lines += [f"Our best valid load (any policy) / the bound at the engine speed inside that run: "
                      f"**{s['server_vs_in_run_bound']}** (the scheduling alone; the target compares with the "
                      "isolated bound, so it also counts the engine's slowdown beside LoadGen and the SUT).", ""]
    cores = s.get("core_projection")
    if cores:
        lines += ["## Projection to many-core machines", "",
                  f"From this run: Offline {cores['offline_samples_per_s_per_core']} samples/s per core (headline run over "
                  f"{cores['measured_cores']} cores), and the Server job's single-window service times (mean "
                  f"{cores['mean_service_ms']} ms on a stream of {cores['cores_per_stream']} cores). Assumptions: Offline "
                  "scales linearly with cores (per-core speed as here, no memory-bandwidth or cache limit); Server runs one "
                  "batch-1 stream per "
                  f"{cores['cores_per_stream']} cores with these service times, fed first-come-first-served by an ideal "
                  "dispatcher (many-server queue, Poisson arrivals, p99 <= 130 ms): an upper bound for batch-1 service, "
                  "on this machine's cores (AVX2, no VNNI).", "",
                  "| cores | streams | Offline samples/s | Server QPS at p99 <= 130 ms | Server / Offline |",
                  "|---:|---:|---:|---:|---:|"]
        for r in cores["rows"]:
            lines.append(f"| {r['cores']} | {r['streams']} | {r['offline_samples_per_s']} | {r['server_qps']} | "
                         f"{r['server_vs_offline']} |")
        lines += ["", "Published at scale: " + "; ".join(
            f"{p['what']}: " + (f"{p['offline_samples_per_s']} samples/s" if p.get("offline_samples_per_s")
                                else f"{p['server_vs_offline']}") for p in cores["published"]) + ".", ""]
    ray = s.get("ray")
    if ray:
        cluster = ray.get("cluster") or {}
        lines += ["## Scale-out on Ray", "",
                  f"{ray['workers']} worker(s) of {cluster.get('cpus_per_worker')} CPU on a loopback cluster of "
                  f"{cluster.get('number_of_nodes')} node(s) (Ray {cluster.get('ray_version')}), one LoadGen driver, "
                  "against the local engine on the same cores and features.", "",
                  "| | local | through Ray | Ray / local |", "|---|---:|---:|---:|",
                  f"| Offline samples/s | {ray['offline_local']} | {ray['offline_ray']} | {ray['ray_vs_local']} |"]
        best_ray, best_local = ray.get("server_ray"), ray.get("server_local")
        if best_ray or best_local:
            lines.append(f"| Server: highest target QPS with p99 <= 130 ms | {best_local['target_qps'] if best_local else '-'} | "
                         f"{best_ray['target_qps'] if best_ray else '-'} | "
                         f"{round(best_ray['target_qps'] / best_local['target_qps'], 3) if best_ray and best_local else '-'} |")
        placement = ray.get("placement") or {}
        if "core_vs_node" in placement:
            lines += ["", f"Placement on one node with all the cores (first features only): one actor owning the node "
                          f"{placement['node']} samples/s, one actor per core {placement['core']} samples/s "
                          f"(per core / per node {placement['core_vs_node']})."]
        lines += ["", f"Ray round trip per batch (Offline job): {ray.get('round_trip_ms')}; of it, waiting in the worker "
                      f"for a free stream (the batch sent ahead): {ray.get('queued_in_worker_ms')}; outside the engine "
                      f"and that wait: {ray.get('dispatch_overhead_ms')} (ms).", ""]
        if ray.get("projection"):
            lines += ["Projection (`benchmarks/scaleout.py`): each node like this machine; Offline linear in nodes "
                      "from the Ray Offline figure; Server = an ideal least-loaded FIFO dispatcher over "
                      f"{ray.get('projection_streams_per_node', 1)} batch-1 stream(s) per node with the measured "
                      f"single-window service times through Ray on the one-node cluster (mean "
                      f"{ray['mean_service_ms_through_ray']} ms), p99 <= 130 ms; the driver assumed not to saturate.", "",
                      "| nodes | Offline samples/s | Server QPS at p99 <= 130 ms | Server / Offline |", "|---:|---:|---:|---:|"]
            for row in ray["projection"]:
                lines.append(f"| {row['nodes']} | {row['offline_samples_per_s']} | {row['server_qps']} | {row['server_vs_offline']} |")
            lines.append("")
    lines += two_host_report_lines(s.get("two_hosts"))
    if s.get("bucket_lengths"):
        lines += ["## Engine speed per length and batch (bare loop, section `buckets`)", "",
                  "| length | batch | streams | samples/s | engine build s | memory added MB |", "|---:|---:|---:|---:|---:|---:|"]
        for r in s["bucket_lengths"]:
            lines.append(f"| {r['length']} | {r['batch_size']} | {r['num_streams']} | {r['samples_per_s']} | "
                         f"{r['build_s']} | {r.get('rss_added_mb', '')} |")
        lines.append("")
    if s.get("bucket_plans"):
        choice = s.get("bucket_choice")
        batches = sorted({int(b) for plan in s["bucket_plans"] for b in plan["uniform_batch_samples_per_s"]})
        lines += ["## Bucket sets and batch per bucket (expected Offline samples/s on the dev-set length mix)", "",
                  "Each bucket set drawn from the measured lengths; \"joint\": each bucket at its fastest measured "
                  "batch; then every bucket at one batch. Build s and memory: the joint plan's engines.", ""]
        if choice:
            lines += [f"The harness's default, buckets {','.join(map(str, choice['default_buckets']))} at batch "
                      f"{choice['default_batch']}: {choice['default_expected']} expected; with its batch chosen per "
                      f"bucket ({','.join(map(str, choice['default_joint_batches']))}): "
                      f"{choice['default_joint_expected']} (**{choice['joint_vs_default']}x**). Best plan: "
                      f"{','.join(map(str, choice['best']['buckets']))} at {','.join(map(str, choice['best']['batches']))}, "
                      f"{choice['best']['expected_samples_per_s']} (**{choice['best_vs_default']}x**, "
                      f"{choice['best']['engines']} engines); best with at most as many engines as the default: "
                      f"{','.join(map(str, choice['best_within_default_engines']['buckets']))}, "
                      f"**{choice['best_within_default_engines_vs_default']}x**.", ""]
        lines += ["| buckets | engines | batch per bucket | joint | " + " | ".join(f"all at {b}" for b in batches)
                  + " | vs padded 384 | build s | memory added MB |",
                  "|---|---:|---|---:|" + "---:|" * len(batches) + "---:|---:|---:|"]
        default = (choice or {}).get("default_buckets")
        shown = s["bucket_plans"][:12] + [p for p in s["bucket_plans"][12:] if p["buckets"] == default or p["engines"] == 1]
        for r in shown:
            name = ",".join(map(str, r["buckets"])) + (" (default)" if r["buckets"] == default else "")
            uniform = " | ".join(str(r["uniform_batch_samples_per_s"].get(str(b), "")) for b in batches)
            lines.append(f"| {name} | {r['engines']} | {','.join(map(str, r['batches']))} | {r['expected_samples_per_s']} | "
                         f"{uniform} | {r['vs_padded']}x | {r['build_s']} | {r.get('rss_added_mb') or ''} |")
        lines.append("")
    if s["tune"]:
        lines += [f"## Tuning (bare engine loop, sequence length {s['tune'][0]['length']})", "",
                  "| batch | streams | samples/s | engine build s |", "|---:|---:|---:|---:|"]
        for r in s["tune"]:
            lines.append(f"| {r['batch_size']} | {r['num_streams']} | {r['samples_per_s']} | {r['build_s']} |")
        lines.append("")
    if results.get("plots"):
        lines += ["## Plots", ""] + [f"![{name}]({Path(path).name})" for name, path in results["plots"].items()] + [""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def target_lines(summary: dict) -> list[str]:
    """The targets this invocation measured (none: no section; the rest named in one line, not a table of blanks)."""
    measured = [key for key in TARGET_TEXT if summary["targets"].get(key) is not None]
    if not measured:
        return []
    lines = ["", "## Targets", "", "| target | goal | measured | met |", "|---|---|---:|---|"]
    for key in measured:
        what, goal, fmt = TARGET_TEXT[key]
        met = summary["met"].get(key)
        lines.append(f"| {what} | {goal.format(summary['target_values'][key])} | {fmt.format(summary['targets'][key])} | "
                     f"{'yes' if met else ('no' if met is False else '-')} |")
    missing = [TARGET_TEXT[key][0] for key in TARGET_TEXT if key not in measured]
    if missing:
        lines += ["", "Not measured by the sections run: " + "; ".join(missing) + "."]
    return lines


def engines_section(engines: dict | None) -> list[str]:
    """Section engines: OpenVINO against DeepSparse, same model and defaults, one invocation, with the ISA."""
    if not engines:
        return []

    def cell(value, suffix: str = "") -> str:
        return "not measured" if value is None else f"{value}{suffix}"

    first, full = engines["offline_first"], engines["offline_all"]
    sweep, single = engines["server_sweep"], engines["singlestream_p90_ms"]
    by_policy = engines.get("server_by_policy") or {"ds": {}, "ov": {}}
    policies = list(dict.fromkeys(p for rows in by_policy.values() for p in rows))
    lines = ["## Engines: OpenVINO vs DeepSparse (section `engines`)", "",
             f"CPU: {engines.get('cpu_model')}; ISA: {', '.join(engines.get('isa') or []) or 'baseline x86-64'}. The same "
             "INT8 model (OpenVINO runs its QDQ form, DeepSparse its MatMulInteger form), features and harness "
             f"defaults, adjacent jobs. OpenVINO executed: {engines.get('openvino_precision') or 'not recorded'}.", "",
             "| | DeepSparse | OpenVINO | OpenVINO / DeepSparse |", "|---|---:|---:|---:|",
             f"| Offline samples/s, all features | {cell(full['deepsparse'])} | {cell(full['openvino'])} | "
             f"{cell(full['openvino_vs_deepsparse'], 'x')} |",
             f"| Offline samples/s, first N features | {cell(first['deepsparse'])} | {cell(first['openvino'])} | "
             f"{cell(first['openvino_vs_deepsparse'], 'x')} |",
             f"| Server, highest swept QPS LoadGen called VALID | {cell((sweep['ds'] or {}).get('target_qps'))} | "
             f"{cell((sweep['ov'] or {}).get('target_qps'))} | {cell(engines['server_sweep_openvino_vs_deepsparse'], 'x')} |",
             *(f"| Server, {policy} policy: highest VALID QPS (/ Offline) | {_load(by_policy['ds'].get(policy))} | "
               f"{_load(by_policy['ov'].get(policy))} | |" for policy in policies),
             f"| SingleStream p90 ms (lower is better) | {cell(single['deepsparse'])} | {cell(single['openvino'])} | "
             f"{cell(engines['singlestream_p90_openvino_vs_deepsparse'], 'x')} |", ""]
    auto = engines.get("auto")
    if auto:
        verdict = ("not measured here" if auto["agrees"] is None else "it agrees" if auto["agrees"] else
                   "it DISAGREES: update the rule (harness/engine_choice.py) and docs/running.md, Which engine")
        lines += [f"`--backend auto` picks {auto['engine']} on this CPU class ({auto['cpu_class']}"
                  f"{'' if auto['rule_measured'] else ', a line of the rule that rested on no measurement'}); faster "
                  f"here in Offline: {auto['faster_offline'] or 'not measured'}: {verdict}.", ""]
    names = {"ds": "DeepSparse", "ov": "OpenVINO"}
    for engine, run in (engines.get("server_full") or {"ov": engines.get("server_full_openvino")}).items():
        if run:
            lines += [f"{names[engine]} full-length Server run (mlperf.conf durations), policy {run.get('policy')}, at "
                      f"{run['target_qps']} QPS: {run['validity']}, p99 {run['p99_ms']} ms over {run['query_count']} "
                      f"queries; Server / Offline (all features) = {cell(run.get('vs_offline'))} (counted only when "
                      "VALID)." + _refused_attempts((engines.get("server_full_attempts") or {}).get(engine, []), run), ""]
    variants = engines.get("openvino_variants_vs_default") or {}
    names = {"f32_float_ops": "float operations in f32 (--precision f32) instead of the engine's default",
             "sparse_weights": "sparse weight decompression (--sparse-weights-rate)",
             "dense_fp32_14l": "the dense FP32 14-layer model (engine default precision)"}
    shown = [(names[key], value) for key, value in variants.items() if value is not None]
    if shown:
        lines += ["OpenVINO variants, Offline over the first N features, against OpenVINO's default on the INT8 model:", ""]
        lines += [f"- {what}: {value}x" for what, value in shown] + [""]
    return lines


def _refused_attempts(attempts: list[dict], shown: dict) -> str:
    """The full-length attempts LoadGen refused before the one shown."""
    refused = [a for a in attempts if a["validity"] != "VALID" and a["target_qps"] != shown["target_qps"]]
    return "" if not refused else " Tried before it: " + "; ".join(
        f"{a['target_qps']} QPS ({a['invalid_reason'] or 'INVALID'})" for a in refused) + "."


def _load(row: dict | None) -> str:
    if not row:
        return "none VALID"
    return f"{row['target_qps']} ({row['vs_offline']})" if row.get("vs_offline") is not None else f"{row['target_qps']}"


def write_plots(results: dict, out_dir: Path) -> dict[str, str]:
    plt = pyplot()
    s = results["summary"]
    plots: dict[str, str] = {}

    rows = [r for r in s["offline"] if r["samples"] == results["samples"]]
    if rows:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
        labels = [f"{r['backend']} {r['model'].replace(' (UNTRAINED)', '')}\n"
                  f"{DESIGN_NAMES.get(r['design'], r['design']) if r['design'] != 'ours' else ('buckets' if r['buckets'] else 'padded 384')}"
                  for r in rows]
        ax.barh(range(len(rows)), [r["samples_per_s"] for r in rows],
                color=["tab:green" if r["buckets"] else ("tab:red" if r["design"] != "ours" else "tab:blue") for r in rows])
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"Offline samples/s (first {results['samples']} SQuAD dev windows)")
        ax.set_title("Offline throughput (untrained models: speed only)")
        fig.tight_layout()
        plots["offline_throughput"] = save_plot(fig, out_dir / "offline_throughput.png")

    if s["server"]:
        fig, ax = plt.subplots(figsize=(10, 4.5))
        for job, color in zip(s["server_best"], SERIES_COLORS):
            points = sorted((r for r in s["server"] if r["job"] == job and r["p99_ms"] is not None),
                            key=lambda r: r["target_qps"])
            if not points:
                continue
            qps = [r["target_qps"] for r in points]
            for key, style in (("p50_ms", ":"), ("p90_ms", "--"), ("p99_ms", "-")):
                ax.plot(qps, [r[key] for r in points], style, color=color, marker="o", markersize=3,
                        label=f"{job} {key[:3]}")
        for bound, style in zip(s.get("server_bounds", []), itertools.cycle(("-.", ":", "--", (0, (1, 4))))):
            what = f"{bound['job']}, {bound['kind']} service" if bound.get("job") else "at Offline speed"
            ax.axvline(bound["max_qps"], color="gray", linestyle=style, linewidth=0.8,
                       label=f"ideal queue, {what}: {bound['max_qps']} QPS")
        ax.axhline(130, color="black", linewidth=0.8)
        ax.text(ax.get_xlim()[0], 133, "130 ms bound", fontsize=7)
        ax.set_yscale("log")
        ax.set_xlabel("offered load (LoadGen target QPS)")
        ax.set_ylabel("latency (ms)")
        ax.set_title("Server: latency vs offered QPS")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        plots["latency_vs_qps"] = save_plot(fig, out_dir / "latency_vs_qps.png")

        fig, ax = plt.subplots(figsize=(7, 4))
        for (job, row), color in zip(s["server_best"].items(), SERIES_COLORS):
            if row is None:
                continue
            path = Path(row["run_dir"]) / SAMPLE_LATENCIES_FILE
            if path.is_file():
                latencies = np.load(path)
                ax.hist(latencies, bins=60, alpha=0.6, color=color,
                        label=f"{job} at {row['target_qps']} QPS (p99 {row['p99_ms']} ms)")
        ax.axvline(130, color="black", linewidth=0.8)
        ax.set_xlabel("per-sample latency, issue to completion (ms)")
        ax.set_ylabel("samples")
        ax.set_title("Server latency distribution at the highest valid load")
        ax.legend(fontsize=7)
        fig.tight_layout()
        plots["latency_distribution"] = save_plot(fig, out_dir / "latency_distribution.png")

    if s["tune"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for streams in sorted({r["num_streams"] for r in s["tune"]}):
            points = sorted((r for r in s["tune"] if r["num_streams"] == streams), key=lambda r: r["batch_size"])
            ax.plot([r["batch_size"] for r in points], [r["samples_per_s"] for r in points], marker="o",
                    label=f"{streams} stream(s)")
        ax.set_xscale("log", base=2)
        plots["tuning"] = finish_plot(fig, ax, out_dir / "tuning.png", "batch size", "samples/s (bare engine loop)",
                                  f"DeepSparse sparse INT8 at sequence length {s['tune'][0]['length']}")

    if s.get("bucket_lengths"):
        fig, ax = plt.subplots(figsize=(6, 4))
        rows = s["bucket_lengths"]
        for batch in sorted({r["batch_size"] for r in rows}):
            points = sorted((r for r in rows if r["batch_size"] == batch), key=lambda r: r["length"])
            ax.plot([r["length"] for r in points], [r["samples_per_s"] * r["length"] for r in points], marker="o",
                    label=f"batch {batch}, {points[0]['num_streams']} stream(s)")
        plots["bucket_speed"] = finish_plot(fig, ax, out_dir / "bucket_speed.png", "engine sequence length (tokens)",
                                        "tokens/s (samples/s x length, bare loop)",
                                        "DeepSparse sparse INT8: speed per bucket length and batch", legend_size=7)

    cores = s.get("core_projection")
    if cores:
        from benchmarks.scaleout import plot_core_projection

        measured = {"cores": cores["measured_cores"], "offline_samples_per_s": cores["measured_offline"],
                    "server_qps": cores["measured_server"]}
        plots["core_projection"] = str(plot_core_projection(cores["rows"], measured, out_dir / "core_projection.png"))
    ray = s.get("ray") or {}
    if ray.get("projection"):
        from benchmarks.scaleout import plot_projection

        measured = {"nodes": 1, "offline_samples_per_s": ray["offline_ray"],
                    "server_qps": (ray.get("server_ray") or {}).get("target_qps")}
        plots["ray_projection"] = str(plot_projection(ray["projection"], measured, out_dir / "ray_projection.png"))
    return plots
