# Developer entry points.  `make test` is what CI runs (see .ci/run).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-installs when pyproject.toml changes; otherwise `make venv` does nothing.
STAMP := $(VENV)/.installed
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-x -k scenario"`.
PYTEST_ARGS ?=
# The suite mostly waits on timers and sockets (run serially: 16 min, of which 4 min of
# CPU), so it runs in 4 processes, a test file per process at a time (its module fixtures
# once): 5.5 min on 2 cores.  `make test PYTEST_PROCESSES=0` runs it in this one.
PYTEST_PROCESSES ?= 4

.PHONY: venv demo test lint format

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

demo: venv
	$(BIN)/ocpp-fleet run --scenario scenarios/demo.toml --chargers 50 --duration 60

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -n $(PYTEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

# lint-imports: the floors of the emulator package ([tool.importlinter] in pyproject.toml).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
