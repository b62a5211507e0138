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
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Lint first: a style or type slip fails the run as surely as a broken test.
test: $(STAMP)
	bash scripts/ensure-chromium.sh
	$(BIN)/python scripts/client_tools.py
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

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
