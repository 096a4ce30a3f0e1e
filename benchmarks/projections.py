"""Figures the benchmark suite derives from its measurements through a model, beside the figures it measures: the
highest Server load a FIFO SUT could hold (:mod:`benchmarks.queueing`), Offline and Server projected to machines of
more cores (:mod:`benchmarks.scaleout`), and the expected Offline speed of every bucket set from the per-length
engine speeds.
"""

from __future__ import annotations

import itertools

import numpy as np

from harness.bucketing import bucket_shares
from harness.scenarios import SERVER_LATENCY_BOUND_MS
from squad.features import FeatureSet


def server_bounds(jobs: dict, length_rows: list[dict], features: FeatureSet, offline_sps: float | None,
                  server_best: dict | None = None) -> list[dict]:
    """The highest Poisson load an ideal FIFO SUT could serve at p99 <= 130 ms (``benchmarks.queueing``),
    for each Server job that timed single windows: with its engine's measured batch-1 latencies on as
    many servers as it has streams; and, once, with every window served alone on the whole machine as fast
    as the headline Offline run processes windows on average (no batching wait: faster than any real SUT
    can serve a single window here, so an upper bound on Server / Offline for FIFO service)."""
    from benchmarks.queueing import max_rate_within_bound, service_model

    models = []
    for label, job in jobs.items():
        if job.get("service_s"):
            measured = {int(length): times for length, times in job["service_s"].items()}
            streams = job["backend"].get("num_streams") or 1
            isolated = service_model(measured, features.seq_lengths)
            models.append((label, "isolated", f"{label}: batch 1, measured single-window latency", streams, isolated))
            # The same service times slowed to the engine time per window inside the job's best valid run:
            # there LoadGen and the SUT threads share the cores with the engine. Measured against this bound,
            # the scheduling alone is judged; against the isolated one, scheduling and that contention.
            best = (server_best or {}).get(label)
            in_run_ms = (best or {}).get("engine_ms_per_batch")
            if in_run_ms and (best or {}).get("batch_size") == 1:
                factor = in_run_ms / 1000 / isolated.mean_s
                slowed = {n: [t * factor for t in times] for n, times in measured.items()}
                models.append((label, "in-run", f"{label}: batch 1, single-window latency x {factor:.2f} (the engine "
                               f"time per window inside its best valid run, {in_run_ms} ms at {best['target_qps']} QPS)",
                               streams, service_model(slowed, features.seq_lengths)))
    offline_speed: dict[int, float] = {}  # the fastest batch measured at each length
    for row in length_rows:
        if row["batch_size"] > 1:
            offline_speed[row["length"]] = max(row["samples_per_s"], offline_speed.get(row["length"], 0.0))
    if models and offline_sps and set(models[0][-1].lengths) <= offline_speed.keys():
        # Relative cost per bucket from the per-length Offline engines, scaled so the mix averages out
        # at the headline Offline samples/s.
        lengths = models[0][-1].lengths
        relative = service_model({n: [1.0 / offline_speed[n]] for n in lengths}, features.seq_lengths)
        scale = 1.0 / offline_sps / relative.mean_s
        models.append((None, "offline-speed", "each window alone at the headline Offline speed (no batching wait)", 1,
                       service_model({n: [scale / offline_speed[n]] for n in lengths}, features.seq_lengths)))
    rows = []
    for job, kind, what, servers, model in models:
        qps = max_rate_within_bound(model, SERVER_LATENCY_BOUND_MS / 1000, servers=servers)
        rows.append({"job": job, "kind": kind, "service": what, "servers": servers, "mean_service_ms": round(1000 * model.mean_s, 2),
                     "bucket_service_ms": {n: round(1000 * float(np.median(t)), 2) for n, t in zip(model.lengths, model.seconds)},
                     "max_qps": round(qps, 2), "utilisation": round(qps * model.mean_s / servers, 3),
                     "vs_offline": round(qps / offline_sps, 3) if offline_sps else None})
    return rows


def core_projection(jobs: dict, offline: dict | None, server_best: dict | None, features: FeatureSet) -> dict | None:
    """Offline and Server projected to machines of 8..192 cores (:func:`benchmarks.scaleout.project_cores`)
    from the headline Offline run and the Server job's single-window service times."""
    from benchmarks.queueing import service_model
    from benchmarks.scaleout import PUBLISHED_AT_SCALE, project_cores

    server = jobs.get("server-ours") or {}
    headline = jobs.get("ds-sparse-int8-bucketed") or {}
    if not offline or not server.get("service_s") or not headline.get("records"):
        return None
    machine_cores = headline["records"][-1]["backend"].get("num_cores") or 1
    backend = server["records"][-1]["backend"] if server.get("records") else server.get("backend", {})
    cores_per_stream = max(1, (backend.get("num_cores") or machine_cores) // (backend.get("num_streams") or 1))
    model = service_model({int(n): t for n, t in server["service_s"].items()}, features.seq_lengths)
    per_core = offline["samples_per_s"] / machine_cores
    return {
        "offline_samples_per_s_per_core": round(per_core, 2), "cores_per_stream": cores_per_stream,
        "mean_service_ms": round(1000 * model.mean_s, 2), "measured_cores": machine_cores,
        "measured_offline": offline["samples_per_s"],
        "measured_server": server_best["target_qps"] if server_best else None,
        "rows": project_cores(per_core, model, cores_per_stream, SERVER_LATENCY_BOUND_MS / 1000),
        "published": list(PUBLISHED_AT_SCALE),
    }


def bucket_plans(length_rows: list[dict], features: FeatureSet) -> list[dict]:
    """Every bucket set drawn from the measured lengths (the longest window's length always in), ranked by
    expected Offline samples/s on the dev-set length distribution, with each bucket at its own fastest
    measured batch (the joint choice) and, for comparison, with one batch for all buckets. Time per window
    in a bucket = 1 / the samples/s of the engine at that length and batch. Each plan also carries what its
    engines cost: compile seconds and memory added, summed over the chosen (length, batch) engines."""
    speed = {(row["length"], row["batch_size"]): row for row in length_rows}
    lengths = sorted({length for length, _ in speed})
    longest = features.params.max_seq_length
    if longest not in lengths:
        return []
    batches = sorted({batch for _, batch in speed})
    window_lengths = features.seq_lengths

    def seconds(bucket: int, batch: int) -> float:
        row = speed.get((bucket, batch))
        return 1.0 / row["samples_per_s"] if row else float("inf")

    plans = []
    shorter = [length for length in lengths if length < longest]
    for chosen in itertools.chain.from_iterable(itertools.combinations(shorter, k) for k in range(len(shorter) + 1)):
        buckets = (*chosen, longest)
        share = bucket_shares(buckets, window_lengths)
        best_batch = [min(batches, key=lambda b: seconds(bucket, b)) for bucket in buckets]
        joint_s = sum(f * seconds(bucket, b) for f, bucket, b in zip(share, buckets, best_batch))
        uniform = {b: sum(f * seconds(bucket, b) for f, bucket in zip(share, buckets)) for b in batches}
        engines = [speed[(bucket, b)] for bucket, b in zip(buckets, best_batch)]
        memory = [row.get("rss_added_mb") for row in engines]
        plans.append({
            "buckets": list(buckets), "engines": len(buckets), "batches": best_batch,
            "window_share": [round(float(f), 3) for f in share],
            "expected_samples_per_s": round(1 / joint_s, 2),
            # keyed by str(batch), as JSON keeps it
            "uniform_batch_samples_per_s": {str(b): round(1 / t, 2) for b, t in uniform.items() if np.isfinite(t)},
            "build_s": round(sum(row.get("build_s") or 0.0 for row in engines), 1),
            "rss_added_mb": round(sum(memory), 1) if None not in memory else None,
        })
    padded = next(p for p in plans if p["buckets"] == [longest])["expected_samples_per_s"]
    for plan in plans:
        plan["vs_padded"] = round(plan["expected_samples_per_s"] / padded, 2)
    return sorted(plans, key=lambda p: -p["expected_samples_per_s"])


def bucket_choice(plans: list[dict], config: dict) -> dict | None:
    """The harness's bucket set at its one Offline batch against the best measured plan, and what choosing
    the batch per bucket adds to the harness's bucket set."""
    default = next((p for p in plans if p["buckets"] == list(config.get("buckets") or ())), None)
    batch = config.get("offline_batch")
    if default is None or str(batch) not in default["uniform_batch_samples_per_s"]:
        return None
    at_default = default["uniform_batch_samples_per_s"][str(batch)]
    best = plans[0]
    best_within_engines = max((p for p in plans if p["engines"] <= default["engines"]),
                              key=lambda p: p["expected_samples_per_s"])
    return {
        "default_buckets": default["buckets"], "default_batch": batch, "default_expected": at_default,
        "default_joint_batches": default["batches"], "default_joint_expected": default["expected_samples_per_s"],
        "joint_vs_default": round(default["expected_samples_per_s"] / at_default, 3),
        "best": best, "best_vs_default": round(best["expected_samples_per_s"] / at_default, 3),
        "best_within_default_engines": best_within_engines,
        "best_within_default_engines_vs_default": round(best_within_engines["expected_samples_per_s"] / at_default, 3),
    }
