#!/usr/bin/env bash
# Install time and size of the release client as a CI job installs it (bench/results/client-install.md).
#
#   bench/client-install.sh TREE LABEL [RUNS]
#
# Builds TREE's wheel, then installs it (no extras) RUNS times into fresh virtualenvs with pip
# (what the jobs `keyless init` writes run) and with uv; run 0 warms the cache and is not
# counted, so the figures are installs from a warm pip/uv cache (metadata still asked of the
# index). Prints seconds, the venv's site-packages in KiB and the number of distributions.
# TOOLS="pip" measures pip only. PYTHON: the interpreter that has build, hatchling and uv.
set -euo pipefail
tree=$1 label=$2 runs=${3:-3}
py=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m build --wheel --no-isolation -o "$work/dist" "$tree" >/dev/null 2>&1
wheel=$(ls "$work"/dist/keyless-*.whl)
for tool in ${TOOLS:-pip uv}; do
  for i in $(seq 0 "$runs"); do
    venv="$work/$tool-$i"
    if [ "$tool" = pip ]; then
      python3.11 -m venv "$venv"
      start=$(date +%s.%N)
      "$venv/bin/python" -m pip install -q "$wheel" 2>/dev/null
    else
      "$py" -m uv venv -q -p python3.11 "$venv"
      start=$(date +%s.%N)
      "$py" -m uv pip install -q --python "$venv/bin/python" "$wheel"
    fi
    end=$(date +%s.%N)
    size=$(du -sk "$venv/lib/python3.11/site-packages" | cut -f1)
    count=$("$venv/bin/python" -c \
      'import importlib.metadata as m; print(len({d.metadata["Name"] for d in m.distributions()}))')
    [ "$i" = 0 ] || printf '%s %s run%s %.2fs %sKiB %s-dists\n' \
      "$label" "$tool" "$i" "$(echo "$end - $start" | bc)" "$size" "$count"
  done
done
