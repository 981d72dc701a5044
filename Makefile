# pullchat: `make run` starts the whole service, `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help run test test-docker lint format typecheck check clean bench bench-smoke bench-longpoll

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@touch $@

# newman, the Postman CLI, runs postman/ against a live stack in the tests.
NEWMAN_PREFIX := $(VENV)/node
NEWMAN := $(NEWMAN_PREFIX)/node_modules/.bin/newman

$(VENV)/.installed-newman:
	@command -v npm >/dev/null || { echo "make test: npm is missing; it installs newman (the Postman CLI). Install Node.js 16 or later with npm (Debian: apt-get install npm)." >&2; exit 1; }
	npm install --prefix $(NEWMAN_PREFIX) --no-audit --no-fund --loglevel=error newman@6
	@touch $@

run: $(VENV)/.installed ## install and start Redis (unless REDIS_URL is set), the RPC service and the front end
	$(BIN)/pullchat-run

test: $(VENV)/.installed-dev $(VENV)/.installed-newman ## install and run the test suite (needs redis-server, redis-cli, wrk, npm and chromium: see README)
	NEWMAN=$(NEWMAN) $(BIN)/python -m pytest $(PYTEST_ARGS)

test-docker: $(VENV)/.installed-dev ## as root: the stack on a real Docker engine of its own (tests_docker/, deploy/README.md)
	$(BIN)/python -m pytest tests_docker $(PYTEST_ARGS)

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

bench-longpoll: $(VENV)/.installed-bench ## what waiting pulls cost: delivery latency, idle CPU, memory (~6 min)
	$(BIN)/python -m bench.longpoll $(BENCH_ARGS)

bench-chats: $(VENV)/.installed-bench ## what conversation lists cost: send A/B, /api/chats by list size, bytes (~5 min)
	$(BIN)/python -m bench.chats $(BENCH_ARGS)

bench-ab: $(VENV)/.installed-bench ## two variants side by side: BENCH_ARGS='--a HEAD~1 --b .' (bench/README.md)
	$(BIN)/python -m bench.ab $(BENCH_ARGS)

screenshot: $(VENV)/.installed-dev ## the README's picture of the chat page, taken by its browser test
	PULLCHAT_SCREENSHOT=docs/chat-page.png $(BIN)/python -m pytest tests/test_web.py -k two_users -q

check: lint typecheck test bench-smoke ## everything CI runs after installing

clean: ## remove the virtual environment, caches and local Redis data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis data *.egg-info
