#!/usr/bin/env bash
# MLPerf bert Offline scenario: performance run, then accuracy run, each in its own runs/ directory.
# Sets up .venv and builds the default (untrained) benchmark model on first use.
#   ./run_offline.sh                      full run per mlperf.conf (10 min minimum duration)
#   ./run_offline.sh --quick              smoke run: 320 features, a few minutes
#   ./run_offline.sh --help               every option (model, backend, data dir, engine, overrides)
#   ./run_offline.sh --submission [...]   package a bert-99 submission tree instead (= python -m submission
#                                         [...]: Offline + SingleStream runs, TEST01, validator)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
# --- submission packaging (submission/) ---
if [ "${1:-}" = "--submission" ]; then
  shift
  exec "$OBERT_PY" -m submission "$@"
fi
# --- end submission packaging ---
exec "$OBERT_PY" -m harness run --scenario Offline --mode both "$@"
