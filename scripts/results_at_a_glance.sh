#!/usr/bin/env bash
# The README's "Results at a glance", in one invocation: every scenario at its full MLPerf length (mlperf.conf's
# 10-minute minimum), then the Offline accuracy run, on one engine and model, with LoadGen's verdict for each.
#
#   scripts/results_at_a_glance.sh RUNS_DIR [harness run options, e.g. --backend openvino --data-dir DATA]
#
# Writes RUNS_DIR/glance/glance.md (the table, its provenance on top) and two plots (python -m benchmarks.glance).
#
# Only the load each scenario is offered is set here, from this machine's own measurements (user.conf's targets
# are one machine's), and written as a user.conf for this machine (RUNS_DIR/user.conf) that the full-length runs
# read, as a submitter's would: Offline's expected QPS is a short Offline run's throughput, so LoadGen issues
# enough samples for the 10 minutes; Server's target is the highest of a few 60 s probes whose p99 held 130 ms,
# times 0.95. About 40 minutes on 2 cores. Measure on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
[ $# -ge 1 ] || { echo "usage: $0 RUNS_DIR [harness run options]" >&2; exit 2; }
runs="$1"; shift
mkdir -p "$runs"

run() {  # harness run; prints its summary line; the newest run directory's run.json is what we read
  "$OBERT_PY" -m harness run --runs-dir "$runs" --no-progress "$@" "${options[@]}" | tail -n 1
}
field() {  # a value from the newest run's run.json, by a Python expression over `r`
  "$OBERT_PY" -c "import json,pathlib,sys; d=max(pathlib.Path(sys.argv[1]).glob('2*'), key=lambda p: p.name); \
r=json.loads((d/'run.json').read_text()); print($1)" "$runs"
}
options=("$@")

echo "== provenance: $(date -u '+%Y-%m-%d %H:%M:%S') UTC, commit $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# The probes below override LoadGen settings (short): they only choose the offered load, not results.
run --scenario Offline --count 2048 --min-duration-ms 30000 >/dev/null
offline_qps=$(field "round(r['results']['samples_per_second'], 1)")
echo "probe Offline (first 2048 features, 30 s): $offline_qps samples/s"

server_qps=""
for fraction in 0.35 0.30 0.25 0.20 0.15; do
  qps=$("$OBERT_PY" -c "print(round($offline_qps * $fraction, 1))")
  run --scenario Server --target-qps "$qps" --min-duration-ms 60000 --min-query-count 1 >/dev/null
  p99=$(field "r['results']['latency_ms']['p99']")
  echo "probe Server at $qps QPS (60 s): p99 $p99 ms"
  if "$OBERT_PY" -c "import sys; sys.exit(0 if $p99 <= 130 else 1)"; then
    server_qps=$("$OBERT_PY" -c "print(round($qps * 0.95, 1))")
    break
  fi
done
[ -n "$server_qps" ] || { echo "no probe held p99 <= 130 ms" >&2; exit 1; }
run --scenario SingleStream --min-duration-ms 30000 >/dev/null
p50=$(field "r['results']['latency_ms']['p50']")
# LoadGen pre-generates 2 x duration / target_latency queries: below the real latency, it never runs out
single_ms=$("$OBERT_PY" -c "print(max(1, round($p50 / 2)))")
echo "probe SingleStream (30 s): p50 $p50 ms -> target_latency $single_ms ms"

sed -e "s/^bert.Offline.target_qps = .*/bert.Offline.target_qps = $offline_qps/" \
    -e "s/^bert.Server.target_qps = .*/bert.Server.target_qps = $server_qps/" \
    -e "s/^bert.SingleStream.target_latency = .*/bert.SingleStream.target_latency = $single_ms/" user.conf > "$runs/user.conf"
echo "== full-length runs, no LoadGen overrides: mlperf.conf and $runs/user.conf (Offline $offline_qps, Server $server_qps QPS)"
run --scenario Offline --user-conf "$runs/user.conf"
run --scenario Server --user-conf "$runs/user.conf"
run --scenario SingleStream --user-conf "$runs/user.conf"
run --scenario Offline --mode accuracy --user-conf "$runs/user.conf"

# The table (with provenance) and two plots, from the runs' own records
"$OBERT_PY" -m benchmarks.glance "$runs" "$runs/glance" --command "$0 $runs ${options[*]}"
