#!/bin/bash
# The same comparison on a trained model: the real-accuracy experiment's oBERT 50% seed-42 student (FP32 export).
D=/work/logs/acc2; cd /work/main
M=models/experiment-real-accuracy/runs/obs-50pct-seed42/model-fp32
common="--backend openvino --model $M --mode accuracy --data-dir ../shared/data --no-progress --runs-dir $D/runs"
.venv/bin/python -m harness run --scenario Server --target-qps 100 $common > $D/server.txt 2>&1; echo "server rc=$?" >> $D/rc.txt
.venv/bin/python -m harness run --scenario Offline --packing $common > $D/offline-packed.txt 2>&1; echo "offline-packed rc=$?" >> $D/rc.txt
.venv/bin/python -m harness run --scenario Offline $common > $D/offline-buckets.txt 2>&1; echo "offline-buckets rc=$?" >> $D/rc.txt
