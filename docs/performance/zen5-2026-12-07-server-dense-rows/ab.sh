#!/usr/bin/env bash
# Idle machine: Server runs at one load, dense rows (new default) and without (hold 0), same fixed budget, one invocation.
set -u
cd /work/main
OUT=/work/logs/dense-$(date +%H%M)
mkdir -p "$OUT"; lscpu > "$OUT/lscpu.txt"; git rev-parse HEAD > "$OUT/commit.txt"; git status --short >> "$OUT/commit.txt"
ARGS="run --scenario Server --backend openvino --data-dir ../shared/data --no-progress --runs-dir $OUT --target-qps ${QPS:-140} --min-duration-ms ${DUR:-200000} --token-budget 960"
for round in 1 2; do
.venv/bin/python -m harness $ARGS 2>&1 | tail -1
.venv/bin/python -c "
import sys, harness.scenarios as s
s.DENSE_ROWS_HOLD_SHARE = 0.0  # before: no window is held
from harness.cli import main
sys.exit(main(sys.argv[1:]))" $ARGS 2>&1 | tail -1
done
echo "done $OUT"
