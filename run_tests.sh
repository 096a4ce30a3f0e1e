#!/usr/bin/env bash
# The test suite. Sets up .venv on first use. Tests read SQuAD dev and the vocab from $OBERT_DATA_DIR; unset, from
# ../shared/data beside the checkout, else from the default data directory ./run_offline.sh downloads into
# (${OBERT_CACHE_DIR:-./cache}/data), whichever holds dev-v1.1.json and the vocab first; tests that need the data
# skip without it. Arguments go to pytest (test files or ids to run only those).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
_obert_has_data() {  # dev-v1.1.json and a vocab (squad/data.py's VOCAB_NAMES)
  [ -f "$1/dev-v1.1.json" ] && { [ -f "$1/vocab.txt" ] || [ -f "$1/bert-uncased-vocab.txt" ]; }
}
if [ -z "${OBERT_DATA_DIR:-}" ]; then
  for _obert_dir in ../shared/data "${OBERT_CACHE_DIR:-cache}/data"; do  # harness/cli.py: DEFAULT_DATA_SUBDIR
    if _obert_has_data "$_obert_dir"; then
      export OBERT_DATA_DIR="$(cd "$_obert_dir" && pwd)"
      break
    fi
  done
fi
exec "$OBERT_PY" -m pytest "$@"  # no path given: pytest.ini's testpaths (tests/)
