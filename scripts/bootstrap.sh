#!/usr/bin/env bash
# Sourced by run_offline.sh, run_server.sh and run_tests.sh: makes .venv with the pinned dependency
# set on first use (a few minutes) and returns at once on later calls, until setup.py or
# constraints.txt change.
#   PYTHON                 interpreter to build the venv with (default: python3.11, else python3 if 3.11)
#   OBERT_VENV             where the venv lives (default: <repo>/.venv)
#   OBERT_TORCH_INDEX_URL  index for the CPU build of torch==2.13.0, e.g. the PyTorch CPU wheel index;
#                          without it pip takes torch from its configured indexes
set -euo pipefail
OBERT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OBERT_VENV="${OBERT_VENV:-$OBERT_ROOT/.venv}"
OBERT_PY="$OBERT_VENV/bin/python"

_obert_stamp="$OBERT_VENV/.obert-installed"
_obert_want="$(cat "$OBERT_ROOT/setup.py" "$OBERT_ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$OBERT_PY" ] || [ "$(cat "$_obert_stamp" 2>/dev/null)" != "$_obert_want" ]; then
  _obert_python="${PYTHON:-}"
  if [ -z "$_obert_python" ]; then
    if command -v python3.11 >/dev/null 2>&1; then _obert_python=python3.11; else _obert_python=python3; fi
  fi
  if ! "$_obert_python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "error: Python 3.11 is required (found $("$_obert_python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  echo ">>> setting up $OBERT_VENV (first run only; a few minutes)" >&2
  "$_obert_python" -m venv "$OBERT_VENV"
  "$OBERT_PY" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=23" 2>&1 | grep -v "is ignored" >&2 || true
  # torch first, on its own: a looser resolution would pull the multi-GB CUDA build.
  if [ -n "${OBERT_TORCH_INDEX_URL:-}" ]; then
    "$OBERT_PY" -m pip install --quiet "torch==2.13.0" --index-url "$OBERT_TORCH_INDEX_URL"
  else
    "$OBERT_PY" -m pip install --quiet "torch==2.13.0"
  fi
  "$OBERT_PY" -m pip install --quiet -c "$OBERT_ROOT/constraints.txt" -e "$OBERT_ROOT[test]"
  echo "$_obert_want" > "$_obert_stamp"
  echo ">>> environment ready" >&2
fi
