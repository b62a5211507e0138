#!/usr/bin/env bash
# The static read path and multi-worker tests run Debian's nginx as an ordinary process on a
# private port, never as the system service. Install it when missing and we may; otherwise say
# how (the tests then fail, naming it).
set -euo pipefail
. "$(dirname "$0")/apt-install.sh"
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if apt_install "installing Debian's nginx for the tests" \
  "nginx is missing: install it (e.g. 'sudo apt-get install nginx') to run its tests" \
  --no-install-recommends nginx; then
  # Debian starts the system service on install; the tests run their own instance.
  service nginx stop >/dev/null 2>&1 || true
fi
