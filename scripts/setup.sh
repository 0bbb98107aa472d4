#!/usr/bin/env bash
# Create .venv and install the project with its dev tools. Idempotent; no network beyond PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# A plain `torch` requirement pulls a multi-GB CUDA build; install the CPU build first when no
# torch is present (pip then keeps it, since the project's range torch>=2.2,<3 admits it).
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "torch==2.13.0" || python -m pip install -q torch \
    --index-url https://download.pytorch.org/whl/cpu
fi
python -m pip install -q -e ".[dev]"
