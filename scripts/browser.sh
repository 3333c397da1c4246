#!/usr/bin/env bash
# What the dashboard's browser test (tests/ui/test_browser.py) needs: Debian's chromium and Playwright's
# Python client pointed at it. Never `playwright install`: that downloads a browser from the internet.
# Idempotent; needs root (or sudo) for apt-get. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
if [ ! -x /usr/bin/chromium ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
"$PY" -m pip install -q --disable-pip-version-check -e ".[browser]"
