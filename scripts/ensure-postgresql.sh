#!/usr/bin/env bash
# The tests start their own PostgreSQL server from Debian's packages (tests/pg.py): install it
# when its server binaries are missing and we may, and make the unprivileged user the tests run
# it as when they run as root (PostgreSQL refuses to run as root). Otherwise say how.
#
# KEYLESS_PG_ROOT (default /usr/lib/postgresql) is where Debian puts each version's bin/.
set -euo pipefail
. "$(dirname "$0")/apt-install.sh"
root="${KEYLESS_PG_ROOT:-/usr/lib/postgresql}"
user="${KEYLESS_PG_USER:-keyless-test}"

have_server() {
  compgen -G "$root/*/bin/postgres" >/dev/null && compgen -G "$root/*/bin/initdb" >/dev/null
}

if ! have_server; then
  if ! apt_install "installing Debian's postgresql for the database tests" \
    "PostgreSQL is missing: install it (e.g. 'sudo apt-get install postgresql') to run the database tests" \
    postgresql; then
    exit 0
  fi
  if ! have_server; then
    echo "apt-get installed postgresql but no $root/*/bin/postgres appeared" >&2
    exit 1
  fi
fi

# Debian's package starts a cluster of its own; the tests never use it, and leave it alone.
if [ "$(id -u)" = "0" ] && ! getent passwd "$user" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
fi
