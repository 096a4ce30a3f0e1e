"""Probe (issue 14): DeepSparse speed and logit identity of the packed INT8 variant vs length buckets, on the
same untrained benchmark model (seed 42) and the first 2048 SQuAD dev windows; one engine over 2 cores, batch 8.
Usage: python scripts/probe_packing.py OUT_DIR (data in ../shared/data, features cached in ./cache/features).
To become a section of the benchmark suite once the packing path is in the harness."""
import json, sys, time
from pathlib import Path
import numpy as np
from squad.features import FeatureParams, load_or_build_features
from harness.packing import pack_windows, packed_inputs, unpack_logits
from harness.bucketing import bucket_batches
from harness.models import inspect_onnx_model
from harness.backends import BackendOptions
from harness.backends.bucketed import create_bucketed_backend
from compression.benchmark_model import DEFAULT_VARIANT, prepare_benchmark_model
from compression.export import export_onnx
from deepsparse import compile_model

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
N, BATCH = 2048, 8
f = load_or_build_features("../shared/data/dev-v1.1.json", "../shared/data/bert-uncased-vocab.txt", FeatureParams(), "cache/features", progress=False)
L = f.seq_lengths[:N]
t = time.time()
if not (out / "packed.onnx").exists():
    p = prepare_benchmark_model(DEFAULT_VARIANT, work_dir=out / "work")
    export_onnx(p.model, out / "plain.onnx", quantized=True)
    export_onnx(p.model, out / "packed.onnx", quantized=True, packed=True)
print("build+export s", round(time.time() - t, 1), flush=True)
rows = pack_windows(np.arange(N), L, 384)
feeds = packed_inputs(rows, f.input_ids, f.segment_ids, f.seq_lengths, 384)
nrows = len(rows) - len(rows) % BATCH
t = time.time(); eng = compile_model(str(out / "packed.onnx"), batch_size=BATCH, num_cores=2); print("packed compile s", round(time.time() - t, 1), flush=True)
names = ("input_ids", "window_ids", "token_type_ids", "position_ids")
eng.run([feeds[k][:BATCH] for k in names])
t = time.time(); windows = 0; outs = []
for i in range(0, nrows, BATCH):
    s, e = eng.run([np.ascontiguousarray(feeds[k][i:i + BATCH]) for k in names]); outs.append((s, e))
    windows += sum(len(r.windows) for r in rows[i:i + BATCH])
packed_s = time.time() - t
res = {"windows": N, "rows": len(rows), "packed_windows_timed": windows, "packed_windows_per_s": windows / packed_s}
print(res, flush=True)
model = inspect_onnx_model(out / "plain.onnx")
t = time.time()
backend = create_bucketed_backend("deepsparse", model, BackendOptions(batch_size=BATCH, num_cores=2, sequence_buckets=(128, 192, 256, 384)), progress=False)
print("bucket compile s", round(time.time() - t, 1), flush=True)
batches = bucket_batches(list(range(N)), L, (128, 192, 256, 384), BATCH)
mask = f.input_mask.astype(np.int64)
ids64, tt64 = f.input_ids.astype(np.int64), f.segment_ids.astype(np.int64)
backend.predict(ids64[:BATCH], mask[:BATCH], tt64[:BATCH])
t = time.time(); done = 0; bucket_logits = {}
for b in batches:
    s, e = backend.predict(ids64[b], mask[b], tt64[b]); done += len(b)
    for j, w in enumerate(b): bucket_logits[w] = s[j]
bucket_s = time.time() - t
res["bucketed_windows_per_s"] = done / bucket_s
res["packed_vs_bucketed"] = res["packed_windows_per_s"] / res["bucketed_windows_per_s"]
# identity on the timed packed rows
diffs = []
ps, pe = np.zeros((len(f.seq_lengths), 384), np.float32), np.zeros((len(f.seq_lengths), 384), np.float32)
for k, (s, e) in enumerate(outs):
    part = rows[k * BATCH:(k + 1) * BATCH]
    unpack_logits(part, s, e, f.seq_lengths, ps, pe)
    for w in (w for row in part for w in row.windows):
        n = int(f.seq_lengths[w]); diffs.append(float(np.abs(ps[w, :n] - bucket_logits[w][:n]).max()))
res["max_abs_logit_diff"] = max(diffs); res["logit_scale"] = float(max(np.abs(v).max() for v in bucket_logits.values()))
print(json.dumps(res), flush=True)
(out / "result.json").write_text(json.dumps(res, indent=1))
