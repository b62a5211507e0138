#!/usr/bin/env bash
# tests/deploy/test_systemd_unit.py checks deploy/systemd/keyless.service with systemd-analyze
# (no running systemd needed). Install Debian's systemd package for it when missing and we may.
set -euo pipefail
. "$(dirname "$0")/apt-install.sh"
if command -v systemd-analyze >/dev/null 2>&1; then
  exit 0
fi
apt_install "installing Debian's systemd (for systemd-analyze) for the tests" \
  "systemd-analyze is missing: install systemd (e.g. 'sudo apt-get install systemd')" \
  systemd || true
