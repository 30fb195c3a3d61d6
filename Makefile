# Contract: setup, test, check, cluster-up, cluster-down, bench are called by other tooling.
# `make playground` is the first command in the README: the bot in a browser, no Slack needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLUSTER_DIR ?= $(CURDIR)/.cluster
PYTEST_ARGS ?=
PLAYGROUND_PORT ?= 8080

.PHONY: setup test check lint typecheck cluster-up cluster-down control-plane bench playground

$(BIN)/rollout-bot: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/rollout-bot

# Builds (first time only) and caches the control-plane binaries outside the repository.
control-plane:
	bot/devkit/cluster/build-control-plane.sh >/dev/null

test: setup control-plane
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check bot handlers tests
	$(BIN)/ruff format --check bot handlers tests

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

cluster-up: setup control-plane
	$(BIN)/python -m bot.devkit.control_plane up "$(CLUSTER_DIR)"

cluster-down: setup
	$(BIN)/python -m bot.devkit.control_plane down "$(CLUSTER_DIR)"

# Starts (or reuses, with CLUSTER_DIR or PLAYGROUND_KUBECONFIG) a cluster, redis-server, the bot
# and the page at http://127.0.0.1:$(PLAYGROUND_PORT); Ctrl-C stops all of it.
playground: setup
	@exec $(BIN)/rollout-bot playground --port "$(PLAYGROUND_PORT)" --install-missing

bench: setup control-plane
	$(BIN)/python -m tests.bench
