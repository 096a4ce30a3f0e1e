#!/usr/bin/env bash
# The test suite. Sets up .venv on first use. Tests read SQuAD dev and the vocab from $OBERT_DATA_DIR
# (default: ../shared/data beside the checkout); arguments go to pytest (test files or ids to run only those).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
if [ -z "${OBERT_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export OBERT_DATA_DIR="$(cd ../shared/data && pwd)"
fi
exec "$OBERT_PY" -m pytest "$@"  # no path given: pytest.ini's testpaths (tests/)
