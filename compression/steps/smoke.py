"""``smoke``: the whole pipeline at toy scale: teacher (cached) -> prune -> quantize -> export."""

from __future__ import annotations

import json
import time
from typing import Any

from cmdline.provenance import provenance
from compression.steps.config import RunConfig
from compression.steps.data import dataset_files
from compression.steps.export import run_export
from compression.steps.prune import run_prune
from compression.steps.quantize import run_quantize
from compression.steps.teacher import ensure_smoke_teacher


def run_smoke(config: RunConfig, *, overwrite: bool = True, check_deepsparse: bool = True) -> dict[str, Any]:
    """teacher (cached) -> prune -> quantize -> export with the smoke preset; returns a summary."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    teacher_dir = ensure_smoke_teacher(config, dataset_files(config).vocab)
    timings["teacher"] = round(time.perf_counter() - t0, 2)
    reports = {}
    for name, run in (("prune", lambda: run_prune(config, model_spec=str(teacher_dir), teacher_spec=str(teacher_dir))),
                      ("quantize", lambda: run_quantize(config, teacher_spec=str(teacher_dir))),
                      ("export", lambda: run_export(config, overwrite=overwrite, check_deepsparse=check_deepsparse))):
        t0 = time.perf_counter()
        reports[name] = run()
        timings[name] = round(time.perf_counter() - t0, 2)
    summary = {
        "provenance": provenance(),
        "preset": config.preset.name,
        "out_dir": str(config.out_dir),
        "model_dir": reports["export"]["model_dir"],
        "passed": all(r["passed"] for r in reports.values()),
        "failed": {name: r["failed_checks"] for name, r in reports.items() if not r["passed"]},
        "timings_s": {**timings, "total": round(time.perf_counter() - started, 2)},
        "evaluation": {
            "teacher": reports["prune"]["evaluation"]["teacher"],
            "pruned": reports["prune"]["evaluation"]["pruned"],
            "qat": reports["quantize"]["evaluation"]["qat"],
            "onnx": reports["export"]["evaluation"]["onnx"],
        },
        "notes": reports["prune"]["notes"],
    }
    (config.out_dir / "reports" / "smoke.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
