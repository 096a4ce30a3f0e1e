"""Check an exported model directory end to end and record the result as ``verify.json``.

Each check reports ``passed`` (true/false, or null when skipped, with a ``reason``): the graph's structure and weights
(:mod:`compression.graph_checks`), its logits in ONNX Runtime, DeepSparse and OpenVINO against PyTorch's and each
other's (:mod:`compression.runtime_checks`, within :mod:`compression.tolerances`), its held-out F1 against its
PyTorch model's, and for an INT8 model the same of its QDQ form (``model-qdq.onnx``). What each check means and the
measurements behind its bound: docs/compression.md, "Verification".
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.errors import VerificationError
from compression.export import MANIFEST_FILE, ONNX_FILE
from compression.graph_checks import (
    FLOAT_MATMUL_OPS,
    INT8_MATMUL_OPS,
    QDQ_MATMUL_OP,
    OnnxWeight,
    interface_check,
    layers_check,
    matmul_check,
    onnx_linear_weights,
    sparsity_check,
    sparsity_summary,
)
from compression.quantize import float64_copy
from compression.runtime_checks import openvino_int8_check, run_deepsparse, run_openvino, run_ort, run_torch
from compression.synthetic import synthetic_qa_batch
from compression.tolerances import (
    TOLERANCES,
    Tolerance,
    check_result,
    compare_logits,
    f1_bound,
    f1_outside_range,
    widened_to_floor,
)

log = logging.getLogger(__name__)

VERIFY_FILE = "verify.json"
VERIFY_BATCH_SIZE = 2
VERIFY_SEED = 1234  # differs from the calibration seeds, so verification sees unseen inputs


@dataclass(frozen=True)
class AccuracyCheck:
    """What ``f1_vs_torch`` needs: the PyTorch model's held-out scores (``f1``, ...), a function that scores an
    ONNX file on the same windows and, for a QAT model, its scores evaluated in float64 (the reference is then the
    range between the two)."""

    reference: Mapping[str, Any]
    evaluate: Callable[[Path], Mapping[str, Any]]
    reference_float64: Mapping[str, Any] | None = None


def _f1_check(onnx_path: Path, accuracy: AccuracyCheck) -> dict[str, Any]:
    """The ONNX file's F1 within the bound of its PyTorch model's (of the range between its float32 and float64
    evaluations when given)."""
    scores = dict(accuracy.evaluate(onnx_path))
    reference = dict(accuracy.reference)
    delta = scores["f1"] - reference["f1"]
    bound = f1_bound(int(scores["questions"]))
    extra: dict[str, Any] = {}
    if accuracy.reference_float64 is not None:
        low, high, outside = f1_outside_range(scores["f1"], [reference["f1"], accuracy.reference_float64["f1"]])
        extra = {"torch_float64": dict(accuracy.reference_float64), "reference_range": [low, high],
                 "outside_range": round(outside, 4)}
    else:
        outside = abs(delta)
    return check_result(bool(outside <= bound), f1_difference=round(delta, 4), bound=round(bound, 4), onnx=scores,
                  torch=reference, **extra)


def verify_model_dir(
    model_dir: Path,
    torch_model: torch.nn.Module | None = None,
    *,
    raise_on_failure: bool = False,
    write: bool = True,
    check_deepsparse: bool = True,
    check_openvino: bool = True,
    published_as: Path | None = None,
    accuracy: AccuracyCheck | None = None,
) -> dict[str, Any]:
    """Run all checks on ``model_dir``; write ``verify.json`` there and return the same dict.

    ``torch_model`` is the PyTorch model the directory was exported from (for an INT8 export: the
    QAT model with frozen observers). Without it the ``ort_vs_torch`` check is skipped; without ``accuracy``
    the ``f1_vs_torch`` check is.
    ``published_as`` is the final directory when ``model_dir`` is a staging copy (recorded in the result).
    """
    import onnx

    started = time.perf_counter()
    model_dir = Path(model_dir)
    onnx_path = model_dir / ONNX_FILE
    manifest_path = model_dir / MANIFEST_FILE
    if not onnx_path.is_file():
        raise VerificationError(f"{model_dir}: no {ONNX_FILE} to verify")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    precision = manifest.get("precision", "fp32")
    sequence_length = manifest.get("sequence_length")
    details = manifest.get("sparsity_details") or {}
    param_names = list(details.get("params", []))

    checks: dict[str, dict[str, Any]] = {}
    try:
        onnx.checker.check_model(str(onnx_path))
        checks["onnx_checker"] = check_result(True)
    except Exception as exc:  # onnx raises ValidationError, DecodeError, ...
        checks["onnx_checker"] = check_result(False, error=f"{type(exc).__name__}: {exc}")
    onnx_model = onnx.load(str(onnx_path))
    op_types = dict(sorted(Counter(node.op_type for node in onnx_model.graph.node).items()))
    weights = onnx_linear_weights(onnx_model)

    checks["interface"] = interface_check(onnx_model, sequence_length)
    checks["encoder_layers"] = layers_check(onnx_model, manifest.get("num_layers"))
    if param_names:
        checks["matmul_ops"] = matmul_check(weights, param_names,
                                             INT8_MATMUL_OPS if precision == "int8" else FLOAT_MATMUL_OPS)
        checks["weight_sparsity"] = sparsity_check(onnx_model, weights, param_names, details.get("target"), torch_model)
    else:
        reason = "the manifest lists no recipe parameters (sparsity_details.params)"
        checks["matmul_ops"] = check_result(None, reason=reason)
        checks["weight_sparsity"] = check_result(None, reason=reason)

    config_path = model_dir / "config.json"
    vocab_size = json.loads(config_path.read_text()).get("vocab_size", 30522) if config_path.is_file() else 30522
    batch = synthetic_qa_batch(VERIFY_BATCH_SIZE, sequence_length or 384, vocab_size=vocab_size, seed=VERIFY_SEED)
    feed = {name: tensor.numpy() for name, tensor in batch.items()}
    ort_outputs = run_ort(onnx_path, feed)
    torch_outputs = run_torch(torch_model, batch) if torch_model is not None else None
    floor = None
    if torch_outputs is not None and precision == "int8":
        floor = {**compare_logits(run_torch(float64_copy(torch_model), batch), torch_outputs, Tolerance(0.0, 0.0)),
                 "compared": "the PyTorch model in float64 against float32, verify batch"}
        del floor["passed"], floor["tolerance"]
        log.info("numeric floor of the INT8 model (PyTorch float64 vs float32): worst logit %.1f%%, mean %.2f%% of the "
                 "logit scale", 100 * (floor["relative_max_diff"] or 0), 100 * (floor["relative_mean_diff"] or 0))

    def tolerance(check: str) -> Tolerance:
        return widened_to_floor(TOLERANCES[check][precision], floor)

    if torch_outputs is not None:
        checks["ort_vs_torch"] = compare_logits(torch_outputs, ort_outputs, tolerance("ort_vs_torch"))
    else:
        checks["ort_vs_torch"] = check_result(None, reason="no PyTorch model given")
    if check_deepsparse:
        ds_outputs = run_deepsparse(onnx_path, feed, VERIFY_BATCH_SIZE)
        if isinstance(ds_outputs, str):
            checks["deepsparse_vs_ort"] = check_result(None, reason=ds_outputs)
        else:
            checks["deepsparse_vs_ort"] = compare_logits(ort_outputs, ds_outputs, tolerance("deepsparse_vs_ort"))
    else:
        checks["deepsparse_vs_ort"] = check_result(None, reason="disabled by the caller")
    if accuracy is not None:
        checks["f1_vs_torch"] = _f1_check(onnx_path, accuracy)
    else:
        checks["f1_vs_torch"] = check_result(None, reason="no held-out evaluation windows given")

    qdq_spec = manifest.get("qdq")
    qdq_path = model_dir / qdq_spec["onnx_file"] if qdq_spec else None
    openvino_path, openvino_reference, qdq_weights = onnx_path, ort_outputs, {}
    if precision == "int8" and qdq_path is None:
        checks["qdq_form"] = check_result(False, problems=["the manifest names no QDQ form of this INT8 model (qdq.onnx_file)"])
    elif qdq_path is not None:
        qdq_checks, openvino_reference, qdq_weights = _qdq_checks(
            qdq_path, param_names, details.get("target"), torch_model, torch_outputs, feed, accuracy,
            tolerance("ort_vs_torch"))
        checks.update(qdq_checks)
        openvino_path = qdq_path
    if not check_openvino:
        checks["openvino_vs_ort"] = check_result(None, reason="disabled by the caller")
    elif openvino_reference is not None:
        ov_run = run_openvino(openvino_path, feed)
        if isinstance(ov_run, str):
            checks["openvino_vs_ort"] = check_result(None, reason=ov_run)
        else:
            ov_outputs, compiled = ov_run
            checks["openvino_vs_ort"] = {**compare_logits(openvino_reference, ov_outputs, tolerance("openvino_vs_ort")),
                                         "onnx_file": openvino_path.name}
            if openvino_path == qdq_path:
                checks["openvino_int8_matmuls"] = openvino_int8_check(compiled, qdq_weights, param_names)

    failed = [name for name, check in checks.items() if check["passed"] is False]
    result = {
        "model": manifest.get("name"),
        "model_dir": str(published_as or model_dir),
        "passed": not failed,
        "failed_checks": failed,
        "precision": precision,
        "trained": manifest.get("trained"),
        "checks": checks,
        "numeric_floor": floor,
        "sparsity": sparsity_summary(onnx_model, weights, param_names),
        "onnx_op_types": op_types,
        "duration_s": round(time.perf_counter() - started, 2),
    }
    if write:
        (model_dir / VERIFY_FILE).write_text(json.dumps(result, indent=2) + "\n")
    for name, check in checks.items():
        status = {True: "ok", False: "FAILED", None: "skipped"}[check["passed"]]
        log.info("verify %-18s %s%s", name, status, f" ({check['reason']})" if check.get("reason") else "")
    if failed and raise_on_failure:
        report = model_dir / VERIFY_FILE
        if published_as is not None:  # a staging copy, deleted when publishing is vetoed: keep the report beside it
            report = failed_verification_report(Path(published_as))
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(result, indent=2) + "\n")
        target = published_as or model_dir
        raise VerificationError(f"{target}: verification failed ({', '.join(failed)}), not published; see {report}")
    if published_as is not None and not failed:  # an earlier failure's report no longer describes the target
        failed_verification_report(Path(published_as)).unlink(missing_ok=True)
    return result


def _qdq_checks(qdq_path: Path, param_names: list[str], target: float | None, torch_model,
                torch_outputs: dict[str, np.ndarray] | None, feed: dict[str, np.ndarray], accuracy: AccuracyCheck | None,
                torch_tolerance: Tolerance) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray] | None, dict[str, OnnxWeight]]:
    """The checks of the QDQ form (as those of the integer form), prefixed ``qdq_``; also its ONNX Runtime logits on ``feed``
    and its weights (None and {} when the file is missing)."""
    import onnx

    if not qdq_path.is_file():
        return {"qdq_form": check_result(False, problems=[f"{qdq_path.name} is named by the manifest but missing"])}, None, {}
    checks: dict[str, dict[str, Any]] = {}
    try:
        onnx.checker.check_model(str(qdq_path))
        checks["qdq_onnx_checker"] = check_result(True)
    except Exception as exc:
        checks["qdq_onnx_checker"] = check_result(False, error=f"{type(exc).__name__}: {exc}")
    qdq_model = onnx.load(str(qdq_path))
    weights = onnx_linear_weights(qdq_model)
    checks["qdq_interface"] = interface_check(qdq_model, feed["input_ids"].shape[1])
    if param_names:
        checks["qdq_matmul_ops"] = matmul_check(weights, param_names, (QDQ_MATMUL_OP,))
        checks["qdq_weight_sparsity"] = sparsity_check(qdq_model, weights, param_names, target, torch_model)
    outputs = run_ort(qdq_path, feed)
    if torch_outputs is not None:
        checks["qdq_ort_vs_torch"] = compare_logits(torch_outputs, outputs, torch_tolerance)
    else:
        checks["qdq_ort_vs_torch"] = check_result(None, reason="no PyTorch model given")
    if accuracy is not None:
        checks["qdq_f1_vs_torch"] = _f1_check(qdq_path, accuracy)
    return checks, outputs, weights


def failed_verification_report(published_as: Path) -> Path:
    """Where the report of a vetoed export is kept: beside the directory it would have been published as."""
    return published_as.with_name(f"{published_as.name}.verify-failed.json")
