# Contract: setup, test, test-unit, check, cluster-up, cluster-down, bench are called by other tooling.
# `make playground` is the first command in the README: the bot in a browser, no Slack needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLUSTER_DIR ?= $(CURDIR)/.cluster
PYTEST_ARGS ?=
PLAYGROUND_PORT ?= 8080

.PHONY: setup test test-unit check lint typecheck cluster-up cluster-down control-plane bench helm manifests slack-manifests image lock playground

$(BIN)/rollout-bot: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/rollout-bot

# Builds (first time only) and caches the control-plane binaries outside the repository.
control-plane:
	tests/devkit/cluster/build-control-plane.sh >/dev/null

test: setup control-plane
	$(BIN)/pytest $(PYTEST_ARGS)

# The pure and unit tests alone: no control plane, no redis-server, under a minute.
test-unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check bot handlers tests
	$(BIN)/ruff format --check bot handlers tests
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

cluster-up: setup control-plane
	$(BIN)/python -m tests.devkit.control_plane up "$(CLUSTER_DIR)"

cluster-down: setup
	$(BIN)/python -m tests.devkit.control_plane down "$(CLUSTER_DIR)"

# The playground lives in tests/playground (a checkout only, never in the wheel or the image).
# Starts a control plane (or reuses the one of `make cluster-up`, or PLAYGROUND_KUBECONFIG's
# cluster), a private redis-server, the bot and the page at http://127.0.0.1:$(PLAYGROUND_PORT);
# Ctrl-C stops what it started.
playground: setup
	@CLUSTER_DIR="$(CLUSTER_DIR)" exec $(BIN)/python -m tests.playground --port "$(PLAYGROUND_PORT)" --install-missing

bench: setup control-plane
	$(BIN)/python -m tests.bench

# The helm CLI, built (first time only) from its Go module into a cache outside the repository.
HELM = $(shell deploy/build-helm.sh)
helm:
	deploy/build-helm.sh

# deploy/manifests/rollout-bot.yaml is the chart rendered with its default values, for
# kubectl-only installs; tests/deploy keeps it equal to `helm template`.
manifests: helm
	{ printf '%s\n' \
	  '# rollout-bot for `kubectl apply`: the Helm chart deploy/helm/rollout-bot rendered with its' \
	  '# default values (`make manifests`; do not edit by hand). Before applying, create the namespace' \
	  '# and the Secret: see "Install in a cluster" in README.md.'; \
	  $(HELM) template rollout-bot deploy/helm/rollout-bot --namespace rollout-bot; } \
	  > deploy/manifests/rollout-bot.yaml

# deploy/slack/manifest-*-impersonate.yaml: the Slack app manifests with the scopes that
# policy `identity.mode: impersonate` needs; tests/unit/test_slack_manifests.py keeps them current.
slack-manifests: setup
	$(BIN)/python -m tests.devkit.slack_manifests

# requirements.lock: the runtime dependencies with hashes, for the image (same pins as
# constraints.txt). Regenerate after changing either.
lock: setup
	PIP_FIND_LINKS= $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	  --no-emit-find-links --no-emit-index-url --constraint constraints.txt \
	  --output-file requirements.lock pyproject.toml

# The container image, with whichever engine is here: docker (with a running daemon), podman
# or buildah. Without one it says so and fails.
IMAGE ?= rollout-bot
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image:
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine="docker build"; \
	elif command -v podman >/dev/null 2>&1; then engine="podman build"; \
	elif command -v buildah >/dev/null 2>&1; then engine="buildah bud"; \
	else echo "make image: no container engine: install podman or buildah, or start the docker daemon" >&2; exit 1; fi; \
	set -x; $$engine -t $(IMAGE):$(VERSION) --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) .
