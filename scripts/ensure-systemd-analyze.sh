#!/usr/bin/env bash
# tests/deploy/test_systemd_unit.py checks deploy/systemd/keyless.service with systemd-analyze
# (no running systemd needed). Install Debian's systemd package for it when missing and we may.
set -euo pipefail
if command -v systemd-analyze >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's systemd (for systemd-analyze) for the tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  exit 0
fi
echo "systemd-analyze is missing: install systemd (e.g. 'sudo apt-get install systemd')" >&2
exit 0
