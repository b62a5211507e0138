#!/usr/bin/env bash
# The S3 store tests run against two S3 servers: moto's (a Python package) and s3rver, an
# independent one in Node (tests/store/s3_server.py). Install Debian's Node.js and npm when
# missing and we may, then s3rver and its dependencies exactly as tests/store/s3rver's lock
# file pins them, from npm's registry, into tests/store/s3rver/node_modules (git-ignored).
#
# KEYLESS_S3RVER_DIR (default tests/store/s3rver of this checkout) is that folder.
set -euo pipefail
. "$(dirname "$0")/apt-install.sh"
folder="${KEYLESS_S3RVER_DIR:-$(cd "$(dirname "$0")/.." && pwd)/tests/store/s3rver}"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install "installing Debian's nodejs and npm for the s3rver tests" \
    "node or npm is missing: install them (e.g. 'sudo apt-get install nodejs npm') to run the S3 tests" \
    --no-install-recommends nodejs npm || exit 0
fi
# npm records what it installed in node_modules/.package-lock.json: up to date unless the
# lock file changed since.
if [ "$folder/node_modules/.package-lock.json" -nt "$folder/package-lock.json" ]; then
  exit 0
fi
echo "installing s3rver (tests/store/s3rver/package-lock.json) for the S3 tests"
npm ci --prefix "$folder" --registry=https://registry.npmjs.org/ --no-audit --no-fund --silent
