# Two commands for a new user: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test fuzz lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "keyless needs Python 3.11 or newer (set PYTHON=python3.x)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Lint first: a style or type slip fails the run as surely as a broken test. Then the tests, and
# the live-server suites again on PostgreSQL + S3 (tests/backends.py). Each pass runs in
# TEST_WORKERS processes (pytest-xdist): much of a test's time is spent waiting on the live
# servers it started, so while one waits another runs. Each process starts its own session
# servers (and PostgreSQL + S3), so more workers cost more CPU. The tests marked `serial`
# (bounds on time or memory, crash loops: tests/conftest.py SERIAL) then run alone.
TEST_WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest
PARALLEL := -n $(TEST_WORKERS) -m "not serial"
LIVE_SUITES := tests/index tests/web tests/deploy

test: $(STAMP)
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-nginx.sh
	bash scripts/ensure-systemd-analyze.sh
	bash scripts/ensure-postgresql.sh
	bash scripts/ensure-s3rver.sh
	$(BIN)/python scripts/client_tools.py
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/mypy
	$(PYTEST) $(PARALLEL)
	$(PYTEST) -m serial
	$(PYTEST) $(PARALLEL) --backend=postgresql $(LIVE_SUITES)
	$(PYTEST) -m serial --backend=postgresql $(LIVE_SUITES)

# The fuzz suite and the crash loop at length: ten times the cases and kills `make test` runs.
fuzz: $(STAMP)
	KEYLESS_FUZZ_PROFILE=deep $(BIN)/python -m pytest -m fuzz

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) keyless-data .pytest_cache test-output

# Benchmarks against pypiserver, devpi-server and nginx (bench/README.md). Installs what it needs.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench run

# The client a keyless index serves at /+client/ is pinned by these locks (README: "Installing
# the client in CI"): run after changing pyproject's base dependencies, with network to PyPI.
.PHONY: client-lock
client-lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 \
		--custom-compile-command "make client-lock" -q -o src/keyless/publish/locks/client.txt
	echo "uv==$$($(BIN)/uv --version | cut -d' ' -f2)" | $(BIN)/uv pip compile - --generate-hashes \
		--universal --python-version 3.11 --custom-compile-command "make client-lock" -q \
		-o src/keyless/workflows/locks/uv.txt
