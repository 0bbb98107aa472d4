#!/usr/bin/env bash
# Set up (if needed) and run the main job end to end on the embedded default service.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python scripts/demo.py "$@"
