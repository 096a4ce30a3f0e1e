"""Section engines, OpenVINO's INT8 model against the dense model in its float precision: where the time goes, layer
type by layer type (OpenVINO's per-node counters, ``--perf-counters``), the throughput ratio the INT8 model should
earn (target on AMX: at least 1.4x), and whether the sparse-weight kernels engaged."""

from __future__ import annotations

from typing import Any

from engine_introspection.openvino import profile_per_sample

PROFILE_JOBS = {"int8": "ov-profile-int8", "dense": "ov-profile-dense-fp32-14l"}
INT8_VS_DENSE_TARGET = 1.4  # AMX's INT8 peak is twice its BF16 peak


def _last_record(job: dict | None) -> dict | None:
    records = (job or {}).get("records") or []
    return records[-1] if records else None


def openvino_profile_summary(jobs: dict[str, dict]) -> dict[str, Any] | None:
    """The two profile jobs' layer profiles side by side (milliseconds per sample by layer type and kernel), their
    throughput ratio, and the sparse-weights job's kernels; None when the section did not run."""
    records = {kind: _last_record(jobs.get(label)) for kind, label in PROFILE_JOBS.items()}
    if not all(records.values()) or not all("layer_profile" in r["backend"] for r in records.values()):
        return None
    profiles = {kind: profile_per_sample(r["backend"]["layer_profile"]) for kind, r in records.items()}
    speed = {kind: r["results"].get("samples_per_second") for kind, r in records.items()}
    keys = list(dict.fromkeys((layer["layer_type"], layer["exec_type"])
                              for kind in ("int8", "dense") for layer in profiles[kind]["layers"]))
    by_key = {kind: {(layer["layer_type"], layer["exec_type"]): layer for layer in profiles[kind]["layers"]}
              for kind in profiles}
    layers = [{"layer_type": t, "exec_type": e,
               **{f"{kind}_ms_per_sample": (by_key[kind].get((t, e)) or {}).get("ms_per_sample") for kind in profiles},
               **{f"{kind}_nodes": (by_key[kind].get((t, e)) or {}).get("nodes") for kind in profiles}}
              for t, e in keys]
    by_type: dict[str, dict[str, float]] = {}
    for layer in layers:
        entry = by_type.setdefault(layer["layer_type"], {"int8": 0.0, "dense": 0.0})
        for kind in ("int8", "dense"):
            entry[kind] += layer[f"{kind}_ms_per_sample"] or 0.0
    ratio = round(speed["int8"] / speed["dense"], 3) if speed["int8"] and speed["dense"] else None
    sparse = _last_record(jobs.get("ov-engine-offline-sparse-weights"))
    executed = (sparse or {}).get("backend", {}).get("executed_precision") or {}
    return {
        "int8_vs_dense_samples_per_s": ratio, "target": INT8_VS_DENSE_TARGET,
        "target_met": None if ratio is None else ratio >= INT8_VS_DENSE_TARGET,
        "samples_per_s": speed, "precision": {kind: r["backend"].get("precision") for kind, r in records.items()},
        "ms_per_sample": {kind: p["ms_per_sample"] for kind, p in profiles.items()},
        "by_layer_type": {t: {k: round(v, 4) for k, v in entry.items()} for t, entry in
                          sorted(by_type.items(), key=lambda item: -item[1]["int8"])},
        "layers": layers,
        "sparse_weights": sparse and {
            "rate": sparse["backend"].get("sparse_weights_decompression_rate"),
            "sparse_weight_matmuls": executed.get("sparse_weight_matmuls"), "matmul_nodes": executed.get("matmul_nodes"),
            "matmul_kernels": executed.get("matmul_kernels")},
    }


def profile_lines(profile: dict[str, Any] | None) -> list[str]:
    if not profile:
        return []
    ratio = profile["int8_vs_dense_samples_per_s"]
    verdict = ("not measured" if ratio is None else
               f"{ratio}x, target >= {profile['target']}x {'met' if profile['target_met'] else 'NOT met'}")
    lines = ["### OpenVINO: the INT8 model against the dense model, per layer type", "",
             f"Offline samples/s with OpenVINO's per-node counters on (`--perf-counters`, one invocation): INT8 "
             f"{profile['samples_per_s']['int8']} ({profile['precision']['int8']}), dense FP32 14-layer "
             f"{profile['samples_per_s']['dense']} ({profile['precision']['dense']}): INT8 / dense = {verdict} (the "
             "target is set for AMX, whose INT8 peak is twice its BF16 peak). Counted time per sample: INT8 "
             f"{profile['ms_per_sample']['int8']} ms, dense {profile['ms_per_sample']['dense']} ms.", "",
             "| layer type | INT8 ms/sample | dense ms/sample |", "|---|---:|---:|"]
    lines += [f"| {t} | {v['int8']} | {v['dense']} |" for t, v in profile["by_layer_type"].items()]
    lines += ["", "| layer type | kernel | INT8 nodes | INT8 ms/sample | dense nodes | dense ms/sample |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {layer['layer_type']} | {layer['exec_type']} | {layer['int8_nodes'] or ''} | "
              f"{layer['int8_ms_per_sample'] or ''} | {layer['dense_nodes'] or ''} | {layer['dense_ms_per_sample'] or ''} |"
              for layer in profile["layers"]]
    sparse = profile.get("sparse_weights")
    if sparse:
        lines += ["", f"Sparse-weight kernels at CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE {sparse['rate']}: "
                  f"{sparse['sparse_weight_matmuls']} of {sparse['matmul_nodes']} FullyConnected nodes "
                  f"(kernels {sparse['matmul_kernels']}); they need AMX."]
    return lines + [""]
