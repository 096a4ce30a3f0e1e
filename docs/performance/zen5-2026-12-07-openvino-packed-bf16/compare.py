"""Compare the accuracy runs: logits byte for byte per feature, answers per question, F1/EM."""
import json, sys
from pathlib import Path
sys.path.insert(0, "/work/main")
from harness.accuracy import read_accuracy_log

runs = {}
for d in sorted(Path("/work/logs/acc2/runs").glob("*_accuracy")):
    r = json.loads((d / "run.json").read_text())
    label = f"{r['scenario']}-{'packed' if r['backend'].get('packing') else 'buckets'}"
    runs[label] = d
print({k: v.name for k, v in runs.items()})
logs = {k: read_accuracy_log(d / "mlperf_log_accuracy.json") for k, d in runs.items()}
preds = {k: json.loads((d / "predictions.json").read_text()) for k, d in runs.items()}
acc = {k: json.loads((d / "accuracy.txt").read_text()) for k, d in runs.items()}
out = {"runs": {k: str(v) for k, v in runs.items()}, "accuracy": acc, "pairs": {}}
names = list(runs)
for i, a in enumerate(names):
    for b in names[i + 1:]:
        same_bytes = sum(logs[a][q] == logs[b].get(q) for q in logs[a])
        same_answers = sum(preds[a][q] == preds[b].get(q) for q in preds[a])
        out["pairs"][f"{a} vs {b}"] = {"features": len(logs[a]), "logits_byte_identical": same_bytes,
                                      "questions": len(preds[a]), "same_answer": same_answers,
                                      "different_answer": len(preds[a]) - same_answers}
print(json.dumps(out, indent=1))
Path("/work/logs/acc2/compare.json").write_text(json.dumps(out, indent=1) + "\n")
