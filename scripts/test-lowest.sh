#!/usr/bin/env bash
# CI's second leg: install every direct dependency at its declared lower bound in .venv-lowest
# (torch stays at setup.sh's CPU build) and run the core and API tests against them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv-lowest/bin/python ]; then
  "$PY" -m venv .venv-lowest
fi
. .venv-lowest/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0" || python -m pip install -q "torch==2.13.0" \
  --index-url https://download.pytorch.org/whl/cpu
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
python scripts/lowest_constraints.py dev >"$constraints"
python -m pip install -q -c "$constraints" -e ".[dev]"
python -m pip list 2>/dev/null | grep -iE "^($(cut -d= -f1 "$constraints" | paste -sd'|')) " || true
python -m pytest tests/core tests/service -m "not slow" -q -p no:cacheprovider "$@"
