#!/usr/bin/env bash
# MLPerf bert Server scenario (performance): reports whether p99 latency stayed within 130 ms.
#   ./run_server.sh [--quick] [--target-qps N] [--mode both] [--help for every option]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
exec "$OBERT_PY" -m harness run --scenario Server --mode performance "$@"
