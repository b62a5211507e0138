#!/bin/bash
# How main-4585358/ was made: keyless at commit 4585358 (the last one before migrations) serves
# a data folder, gets a user, two tokens (one revoked), an upload (wheel + sdist) by twine and a
# trusted publisher; then, by hand:
#   sqlite3 DATA/keyless.db .dump > main-4585358/keyless.sql; cp -r DATA/blobs main-4585358/
# Usage: git archive 4585358 src | tar -x -C /tmp/main; make-main-4585358.sh /tmp/main/src DATA .
set -euo pipefail
MAIN_SRC=$1; DATA=$2; WT=$3
PY=${PYTHON:-python3}
K="env PYTHONPATH=$MAIN_SRC $PY -m keyless"
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$K serve --data $DATA --port $PORT --indexes test,prod > $DATA.log 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
for i in $(seq 50); do curl -sf http://127.0.0.1:$PORT/_/health >/dev/null && break; sleep 0.2; done
echo correct-horse-battery | $K user add --data $DATA alice --admin --password-stdin
TOKEN=$($K token create --data $DATA --user alice --index prod --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["token"])')
cd $WT && PYTHONPATH=$WT:$WT/src $PY -c '
import sys
from pathlib import Path
from tests.builders import build_wheel, build_sdist, write_dist
out = Path(sys.argv[1]); out.mkdir(exist_ok=True)
for name, data in (build_wheel("demo-migrated", "1.0"), build_sdist("demo-migrated", "1.0")):
    write_dist(out, name, data)
' $DATA.dists
TWINE_USERNAME=__token__ TWINE_PASSWORD=$TOKEN $PY -m twine upload --disable-progress-bar --repository-url http://127.0.0.1:$PORT/prod/legacy/ $DATA.dists/*
$K publisher add github --data $DATA --index prod --project demo-migrated --owner octo --repository demo --workflow release.yml
$K token create --data $DATA --user alice --index test --description revoked-one --json > /dev/null
$K token revoke --data $DATA 2
