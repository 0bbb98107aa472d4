#!/usr/bin/env bash
# What tests/browser needs: Debian's chromium and the Playwright Python package (only its
# driver: the tests launch /usr/bin/chromium, so `playwright install` and its browser
# downloads are never used). Idempotent: installs only what is missing. Run after setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi
if [ ! -x .venv/bin/python ]; then
  echo "install-browser.sh: no .venv; run scripts/setup.sh first" >&2
  exit 1
fi
if ! .venv/bin/python -c "import playwright.sync_api" 2>/dev/null; then
  .venv/bin/python -m pip install -q "playwright>=1.40"
fi
/usr/bin/chromium --version 2>/dev/null
.venv/bin/python -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
