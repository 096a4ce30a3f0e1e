"""The real-accuracy experiment's results: one row per model (held-out PyTorch scores with their spread over seeds,
the sparsity read from each export, the harness's figures), the checks across engines, and the notes that say
what the figures are."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cmdline.provenance import provenance
from compression.dev_split import DEV_SPLIT_NOTE
from compression.tolerances import f1_bound, f1_outside_range
from experiments.real_accuracy.config import LABEL, RealAccuracyConfig, row_label
from experiments.real_accuracy.harness_driver import HarnessJob, predictions_identical
from experiments.real_accuracy.rows import Part
from experiments.real_accuracy.stages import scores_of

def exported_sparsity(model_dir: Path) -> dict[str, Any] | None:
    """The sparsity ``verify.json`` read from an exported model: over the recipe's encoder Linears and over every
    parameter of the model (``compression.graph_checks.sparsity_summary``)."""
    verify = Path(model_dir) / "verify.json"
    return json.loads(verify.read_text()).get("sparsity") if verify.is_file() else None


def seed_statistics(values: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Mean and spread of F1/EM over seeds (stdev and range need two seeds or more)."""
    f1 = [v["f1"] for v in values]
    em = [v["exact_match"] for v in values]
    return {"seeds": seeds, "values": values, "n": len(values),
            "f1_mean": statistics.fmean(f1), "f1_stdev": statistics.stdev(f1) if len(f1) > 1 else None,
            "f1_min": min(f1), "f1_max": max(f1),
            "exact_match_mean": statistics.fmean(em), "exact_match_stdev": statistics.stdev(em) if len(em) > 1 else None}


def summarize(config: RealAccuracyConfig, teacher_info: dict[str, Any], protocol_rows: dict[str, dict[str, Any]],
              qat_report: dict[str, Any], models: dict[str, Path], harness: dict[str, dict[str, Any]], int8_label: str,
              heldout: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The table's rows: PyTorch held-out scores (mean and spread over the seeds of the committed rows,
    ``protocol_rows``: :class:`~experiments.real_accuracy.rows.RowStore`), the sparsity read from each export, and
    the harness's figures; then the checks."""
    rows: list[dict[str, Any]] = []

    def harness_figures(label: str) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for result in harness.values():
            job = result["job"]
            if job["model"] != label or job["scenario"] != "Offline":
                continue
            figures[HarnessJob(**job).column] = {"f1": result.get("f1"), "exact_match": result.get("exact_match"),
                            "questions": result.get("questions"), "samples_per_second": result.get("samples_per_second"),
                            "machine_not_idle": result.get("machine_not_idle"),
                            "engine_precision": result.get("engine_precision")}
        return figures

    rows.append({"model": "dense FP32", "torch": heldout["teacher"], "validation": scores_of(teacher_info["evaluation"]),
                 "harness": harness_figures("dense FP32"), "exported_sparsity": exported_sparsity(models["dense FP32"]),
                 "sparsity": 0.0})
    for sparsity in sorted(config.sparsities):
        for method in config.methods:
            label = row_label(method, sparsity)
            per_seed = [row for seed in config.seeds_for(sparsity)
                        if (row := protocol_rows.get(Part("prune", method, sparsity, seed).name))]
            if not per_seed:
                continue
            rows.append({
                "model": label, "method": method, "sparsity": per_seed[0]["pytorch_sparsity"],
                "torch": per_seed[0]["heldout"],
                "seeds": seed_statistics([scores_of(r["heldout"]) for r in per_seed], [r["seed"] for r in per_seed]),
                "validation": [r["validation"] for r in per_seed], "coverage": [r["coverage"] for r in per_seed],
                "exported_sparsity": per_seed[0]["exported_sparsity"], "harness": harness_figures(label),
            })
    qat_scores = heldout["qat"]
    int8_harness = harness_figures(int8_label)
    rows.append({"model": f"{int8_label} (torch QAT)", "torch": qat_scores, "torch_float64": heldout.get("qat_float64"),
                 "validation": scores_of(qat_report["evaluation"]["qat"]), "coverage": [qat_report["data"].get("coverage")],
                 "harness": {}, "sparsity": None, "exported_sparsity": exported_sparsity(models[int8_label])})
    rows.append({"model": f"{int8_label} (harness)", "torch": None, "harness": int8_harness, "sparsity": None,
                 "exported_sparsity": exported_sparsity(models[int8_label])})
    checks: dict[str, Any] = {}
    # The QAT model's F1 is a range, not one figure: float32 and float64 PyTorch evaluations of the same integers and
    # scales differ (compression.quantize.float64_copy); an engine is judged by how far it lies outside that range.
    reference = [qat_scores["f1"]] + ([heldout["qat_float64"]["f1"]] if heldout.get("qat_float64") else [])
    low, high, _ = f1_outside_range(qat_scores["f1"], reference)
    per_backend = {backend: {"harness": figures["f1"], "difference": round(figures["f1"] - qat_scores["f1"], 3),
                             "outside_range": (outside := round(f1_outside_range(figures["f1"], reference)[2], 3)),
                             "tolerance": (bound := f1_bound(figures.get("questions") or 0, int8_f1_tolerance(backend))),
                             "engine_precision": figures.get("engine_precision"),
                             "passed": outside <= bound}
                   for backend in ENGINES
                   if (figures := int8_harness.get(backend)) and figures.get("f1") is not None}
    if per_backend:
        checks["int8_harness_vs_torch_f1"] = {"torch": qat_scores["f1"], "torch_range": [low, high],
                                              "torch_float64": (heldout.get("qat_float64") or {}).get("f1"),
                                              "per_backend": per_backend,
                                              "passed": all(c["passed"] for c in per_backend.values())}
    bucket_checks = {}
    for result in harness.values():
        job = result["job"]
        if job["scenario"] != "Offline" or not job["bucketing"] or "predictions" not in result:
            continue
        twin = next((r for r in harness.values() if r["job"] == {**job, "bucketing": False}), None)
        if twin is not None and "predictions" in twin:
            bucket_checks[f"{job['model']}|{job['backend']}{'|fast-VNNI' if job['fast_vnni'] else ''}"] = (
                predictions_identical(result["predictions"], twin["predictions"]))
    checks["int8_export_verification"] = export_verification(models[int8_label])
    checks["openvino_float_vs_fp32"] = openvino_float_check(rows)
    checks["bucketing_predictions_identical"] = {"passed": all(c["identical"] for c in bucket_checks.values()) if
                                                 bucket_checks else None, "per_model": bucket_checks}
    packing_checks = {}
    for result in harness.values():
        job = result["job"]
        if not job.get("packing") or "predictions" not in result:
            continue
        twin = next((r for r in harness.values() if r["job"] == {**job, "packing": False, "bucketing": True}), None)
        if twin is not None and "predictions" in twin:
            packing_checks[f"{job['model']}|{job['backend']}"] = predictions_identical(result["predictions"],
                                                                                      twin["predictions"])
    checks["packing_predictions_identical"] = {"passed": all(c["identical"] for c in packing_checks.values()) if
                                               packing_checks else None, "per_model": packing_checks}
    vnni = _vnni_summary(harness, int8_label)
    results = {
        "provenance": provenance(),
        "experiment": "real-accuracy",
        "label": LABEL,
        "config": asdict(config),
        "teacher": {k: teacher_info.get(k) for k in ("pretrained", "vocab_check", "family", "geometry", "steps",
                                                     "windows", "duration_s", "evaluation")},
        "rows": rows,
        "checks": checks,
        "fast_vnni_emulation": vnni,
        "models": {k: str(v) for k, v in models.items()},
        "harness_jobs": harness,
        "notes": [LABEL, DEV_SPLIT_NOTE] + _verification_notes(checks["int8_export_verification"], models[int8_label])
        + _protocol_notes(config) + _harness_caveats(harness),
    }
    return results


def export_verification(model_dir: Path) -> dict[str, Any]:
    """Whether an export passed its verification (``verify.json``), and the checks it failed."""
    verify = Path(model_dir) / "verify.json"
    record = json.loads(verify.read_text()) if verify.is_file() else {}
    return {"passed": record.get("passed"), "failed_checks": record.get("failed_checks", []), "verify_json": str(verify)}


def _verification_notes(check: dict[str, Any], model_dir: Path) -> list[str]:
    if check["passed"] is not False:
        return []
    return [f"the INT8 export FAILED its verification ({', '.join(check['failed_checks'])}: {check['verify_json']}); "
            f"the pipeline would not publish it, the experiment measures it anyway from {Path(model_dir).name}"]


def _protocol_notes(config: RealAccuracyConfig) -> list[str]:
    """What the table's rows are, said where the table is read."""
    single = sorted(x for x in config.sparsities if len(config.seeds_for(x)) < len(config.seeds))
    seeds = (f"{len(config.seeds)} seeds ({', '.join(map(str, config.seeds))}) per pruning row"
             + (f", except {', '.join(f'{round(100 * x)}%' for x in single)}: the first seed only (the 2-core "
                "machine's budget)" if single else "") + "; PyTorch F1 is their mean ± standard deviation"
             if len(config.seeds) > 1 else "one seed per pruning row")
    full = RealAccuracyConfig()
    subset = [f"{what}: {', '.join(map(str, ours))} (the full protocol: {', '.join(map(str, theirs))})"
              for what, ours, theirs in (("sparsities", config.sparsities, full.sparsities),
                                         ("methods", config.methods, full.methods),
                                         ("seeds", config.seeds, full.seeds),
                                         ("harness engines", config.harness_backends, full.harness_backends))
              if tuple(ours) != tuple(theirs)]
    subset_note = (["A SUBSET of the experiment's protocol, " + "; ".join(subset) + ": rows and checks of the "
                    "full protocol that are missing here were not run"] if subset else [])
    return subset_note + [
        f"students (every pruning run and QAT) train on {config.prune_windows} windows drawn at random (their seed) "
        "from every training article in proportion to its windows, the teacher on all of them; coverage per run in "
        "the JSON",
        f"{config.validation_articles} training articles are a validation split (never trained on) for every "
        "evaluation during the steps and the export's F1 check; the held-out articles are read once, for this table",
        seeds,
    ] + ([
        f"baselines: global magnitude (GlobalMagnitudePruningModifier) and per-layer magnitude "
        f"(MagnitudePruningModifier), both on the oBERT recipe's params, 4-block mask, schedule x{config.prune_epoch_scale} "
        "and distillation"] if set(config.methods) - {"obs"} else []) + [
        "sparsity: zeros read from the exported model (verify.json), over the recipe's encoder Linears / over every "
        "parameter of the model (embeddings included)",
    ]


def _harness_caveats(harness: dict[str, dict[str, Any]]) -> list[str]:
    """What limits the harness figures: runs from several invocations (samples/s compare only within one:
    the machine's speed drifts between sessions), INVALID LoadGen runs, runs on a busy machine."""
    notes = []
    by_invocation: dict[str, set[str]] = {}
    for r in harness.values():
        by_invocation.setdefault(r.get("invocation") or "unrecorded", set()).add(r["job"]["model"])
    if len(by_invocation) > 1:
        measured = "; ".join(f"{when}: {', '.join(sorted(models))}" for when, models in sorted(by_invocation.items()))
        notes.append(f"the harness runs span {len(by_invocation)} invocations of the experiment ({measured}):"
                     " compare samples/s only between runs of the same invocation (harness_jobs in the JSON)")
    invalid = sorted(key for key, r in harness.items() if r.get("validity") not in (None, "VALID"))
    if invalid:
        notes.append(f"LoadGen found {len(invalid)} performance run(s) INVALID ({', '.join(invalid)}): see their run "
                     "directories")
    busy = sorted(key for key, r in harness.items() if r.get("machine_not_idle"))
    if busy:
        notes.append(f"the machine was not idle during {len(busy)} harness run(s) ({', '.join(busy)}): their speed "
                     "figures are not comparable")
    return notes


# F1 points an engine's INT8 may lie from the PyTorch QAT model's; OpenVINO's (the QDQ form, float operations in its
# default precision) is held tighter, and so is its bf16 against FP32
INT8_F1_TOLERANCE = 0.5
OPENVINO_F1_TOLERANCE = 0.3
ENGINES = ("deepsparse", "openvino", "onnxruntime")
BACKEND_NAMES = {"deepsparse": "DeepSparse", "openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}


def int8_f1_tolerance(backend: str) -> float:
    """The F1 points an engine's INT8 may differ from the QAT model's (widened on small evaluations: ``f1_bound``)."""
    return OPENVINO_F1_TOLERANCE if backend == "openvino" else INT8_F1_TOLERANCE


def openvino_float_check(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each float model's F1 through OpenVINO (bf16 where the CPU has it: its default) against the same model's FP32
    F1 through ONNX Runtime, length buckets both; within ``OPENVINO_F1_TOLERANCE``."""
    per_model = {}
    for row in rows:
        harness = row.get("harness") or {}
        ours, reference = harness.get("openvino"), harness.get("onnxruntime")
        if row.get("torch") is None or not ours or not reference or ours.get("f1") is None or reference.get("f1") is None:
            continue
        difference = ours["f1"] - reference["f1"]
        bound = f1_bound(ours.get("questions") or 0, OPENVINO_F1_TOLERANCE)
        per_model[row["model"]] = {"openvino": ours["f1"], "onnxruntime_fp32": reference["f1"],
                                   "engine_precision": ours.get("engine_precision"), "difference": round(difference, 3),
                                   "tolerance": bound, "passed": abs(difference) <= bound}
    return {"passed": all(c["passed"] for c in per_model.values()) if per_model else None,
            "tolerance": OPENVINO_F1_TOLERANCE, "per_model": per_model}


FAST_VNNI_MAX_F1_CHANGE = 0.1  # the fast emulation is worth enabling for a model only if F1 moves by less
FAST_VNNI_MIN_SPEEDUP = 1.02  # ... and only if it is faster than the noise of two adjacent Offline runs


def _vnni_summary(harness: dict[str, dict[str, Any]], int8_label: str) -> dict[str, Any]:
    def pick(**want):
        return next((r for r in harness.values() if r["job"]["model"] == int8_label
                     and all(r["job"][k] == v for k, v in want.items())), None)

    exact, fast = pick(backend="deepsparse", bucketing=True, fast_vnni=False, scenario="Offline"), \
        pick(backend="deepsparse", bucketing=True, fast_vnni=True, scenario="Offline")
    ss_exact, ss_fast = pick(scenario="SingleStream", fast_vnni=False), pick(scenario="SingleStream", fast_vnni=True)
    if not exact or not fast:
        return {"measured": False}
    summary = {"measured": True, "offline_speedup": _ratio(fast.get("samples_per_second"), exact.get("samples_per_second")),
               "f1_change": round(fast["f1"] - exact["f1"], 4), "f1_exact": exact["f1"], "f1_fast": fast["f1"]}
    if ss_exact and ss_fast:
        summary["single_stream_p50_ms"] = {"exact": (ss_exact.get("latency_ms") or {}).get("p50"),
                                           "fast": (ss_fast.get("latency_ms") or {}).get("p50")}
        summary["single_stream_speedup"] = _ratio(summary["single_stream_p50_ms"]["exact"],
                                                  summary["single_stream_p50_ms"]["fast"])
    # Worth enabling for this model only if it is faster beyond run-to-run noise and keeps F1; the harness's default
    # stays off, because the speed-up depends on the model (docs/accuracy.md, "--fast-vnni-emulation").
    summary["recommended"] = (abs(summary["f1_change"]) < FAST_VNNI_MAX_F1_CHANGE
                              and (summary["offline_speedup"] or 0.0) >= FAST_VNNI_MIN_SPEEDUP)
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None
