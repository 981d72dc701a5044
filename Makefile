# pullchat: `make run` starts the whole service, `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help run test lint format typecheck check clean bench bench-smoke

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[local]'
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@touch $@

run: $(VENV)/.installed ## install and start Redis (unless REDIS_URL is set), the RPC service and the front end
	$(BIN)/pullchat-run

test: $(VENV)/.installed-dev ## install and run the test suite (needs redis-server, redis-cli and wrk: see README)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(VENV)/.installed-dev ## mypy (strict) on both packages and the launcher
	$(BIN)/mypy

bench: $(VENV)/.installed-bench ## benchmark the whole stack with wrk and hey (BENCH_ARGS='--duration 5'; bench/README.md)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-smoke: $(VENV)/.installed-bench ## a one-minute benchmark that fails on any request error
	$(BIN)/python -m bench --smoke

check: lint typecheck test bench-smoke ## everything CI runs after installing

clean: ## remove the virtual environment, caches and local Redis data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis data *.egg-info
