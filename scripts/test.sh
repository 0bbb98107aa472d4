#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-browser.sh  # Debian chromium for the dashboard's browser test
. .venv/bin/activate
ruff check .
python -m pytest "$@"
