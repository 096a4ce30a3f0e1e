"""Peer models the benchmark compares against that the compression pipeline does not make."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from harness.errors import ModelError

log = logging.getLogger(__name__)

# onnxruntime 1.26's quantization tool maps the INT4/FLOAT8 tensor types that onnx 1.14 (pinned for
# sparseml) does not define. INT8 quantization never uses them, so the child process that quantizes gives
# TensorProto those enum values first; the patch stays in that process.
_QUANTIZE_SCRIPT = """
import sys
import onnx
for name, value in (("FLOAT8E4M3FN", 17), ("FLOAT8E4M3FNUZ", 18), ("FLOAT8E5M2", 19), ("FLOAT8E5M2FNUZ", 20),
                    ("UINT4", 21), ("INT4", 22)):
    if not hasattr(onnx.TensorProto, name):
        setattr(onnx.TensorProto, name, value)
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8)
"""


def _quantize_dynamic_isolated(src: Path, dst: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _QUANTIZE_SCRIPT, str(src), str(dst)], capture_output=True, text=True)
    if proc.returncode != 0 or not dst.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(f"{src}: ONNX Runtime dynamic quantization failed ({tail[0]})")

ORT_INT8_SUFFIX = "-ort-dynamic-int8"


def ort_dynamic_int8(dense_dir: Path, out_dir: Path | None = None) -> Path:
    """ONNX Runtime's own INT8: dynamic quantization (int8 weights, activations quantized per batch at run
    time) of a dense FP32 model directory; built once next to it. The model keeps its manifest, marked."""
    dense_dir = Path(dense_dir)
    out_dir = Path(out_dir) if out_dir else dense_dir.with_name(dense_dir.name + ORT_INT8_SUFFIX)
    target = out_dir / "model.onnx"
    if target.is_file():
        return out_dir
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log.info("quantizing %s with ONNX Runtime dynamic INT8 -> %s", dense_dir, out_dir)
    _quantize_dynamic_isolated(dense_dir / "model.onnx", tmp / "model.onnx")
    manifest_path = dense_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update({
        "name": out_dir.name, "precision": "int8 (ONNX Runtime dynamic quantization)",
        "description": (manifest.get("description", "") + " Quantized by onnxruntime.quantization.quantize_dynamic "
                        "(QInt8 weights); a peer for benchmarks, not a harness model.").strip(),
    })
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (dense_dir / name).is_file():
            shutil.copy2(dense_dir / name, tmp / name)
    tmp.rename(out_dir)
    return out_dir
