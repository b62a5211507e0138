#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work on a
# closed network). Install it when missing and we may; otherwise say how.
set -euo pipefail
. "$(dirname "$0")/apt-install.sh"
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
apt_install "installing Debian's chromium for the browser tests" \
  "chromium is missing: install it (e.g. 'sudo apt-get install chromium') to run the browser tests" \
  chromium || true
