# triaged: `make run` starts the service, `make test` runs the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench clean fuzz-api

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: create .venv, install, start `triaged serve` (embedded PostgreSQL unless TRIAGED_DATABASE_URL is set);
## the first start creates admin@triaged.localhost, its password in triaged-data/initial-admin-password
run: $(STAMP)
	TRIAGED_INITIAL_ADMIN_PASSWORD_FILE="$${TRIAGED_INITIAL_ADMIN_PASSWORD_FILE:-$${TRIAGED_DATA_DIR:-triaged-data}/initial-admin-password}" \
	  $(BIN)/triaged serve

## test: install what the tests need and run them all (unit, integration, end-to-end)
test: $(STAMP)
	$(BIN)/python -m pytest

## fuzz-api: the generated-input contract test (Schemathesis against the real daemon, every role)
## for a long time: TRIAGED_TEST_FUZZ_SECONDS (default 1800; the suite's own run takes 150)
fuzz-api: $(STAMP)
	TRIAGED_TEST_FUZZ_SECONDS="$${TRIAGED_TEST_FUZZ_SECONDS:-1800}" \
	  $(BIN)/python -m pytest tests/e2e/test_api_fuzz.py -p no:cacheprovider -s

lint: $(STAMP)
	$(BIN)/ruff check daemon tests bench
	$(BIN)/ruff format --check daemon tests bench

format: $(STAMP)
	$(BIN)/ruff format daemon tests bench
	$(BIN)/ruff check --fix daemon tests bench

clean:
	rm -rf $(VENV) triaged-data .pytest_cache .ruff_cache
