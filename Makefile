# triaged: `make run` starts the service, `make test` runs the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Exact versions with hashes, resolved from pyproject.toml by `make lock`: the image
# installs LOCK, tests and CI install DEV_LOCK (LOCK plus the dev tools).
LOCK     := requirements.lock
DEV_LOCK := requirements-dev.lock
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28

.PHONY: run test test-embedded lint format bench clean lock lock-upgrade fuzz-api

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## lock: re-resolve the lock files after a change of pyproject.toml's dependencies (keeps
## the locked versions that still fit); lock-upgrade: resolve everything to the newest
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(UV_COMPILE) -o $(LOCK)
	$(UV_COMPILE) --extra dev -o $(DEV_LOCK)

lock-upgrade: $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(UV_COMPILE) --upgrade -o $(LOCK)
	$(UV_COMPILE) --upgrade --extra dev -o $(DEV_LOCK)

## run: create .venv, install, start `triaged serve` (embedded PostgreSQL unless TRIAGED_DATABASE_URL is set);
## the first start creates admin@triaged.localhost, its password in triaged-data/initial-admin-password
run: $(STAMP)
	TRIAGED_INITIAL_ADMIN_PASSWORD_FILE="$${TRIAGED_INITIAL_ADMIN_PASSWORD_FILE:-$${TRIAGED_DATA_DIR:-triaged-data}/initial-admin-password}" \
	  $(BIN)/triaged serve

## test: install what the tests need and run them all (unit, integration, end-to-end)
test: $(STAMP)
	$(BIN)/python -m pytest

## test-embedded: what differs with no database configured (the embedded PostgreSQL 16
## triaged starts itself): its start and stop, migrations, the database layer, the
## queue's and the pipeline's SQL; CI runs `make test` on the system PostgreSQL and this
EMBEDDED_TESTS := tests/e2e/test_process.py tests/integration/test_migrate.py \
	tests/integration/test_db_adapter.py tests/integration/test_db_pool.py \
	tests/integration/test_queue_basics.py tests/integration/test_schedules.py \
	tests/integration/test_pipeline.py
test-embedded: $(STAMP)
	env -u TRIAGED_TEST_DATABASE_URL $(BIN)/python -m pytest $(EMBEDDED_TESTS)

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
