# tandem: every target runs inside the project's own .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BIN ?= python3.11
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PATH := $(VENV)/bin:$(PATH)
export PYTHONPATH := $(CURDIR)
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: help venv redis-server chromium up down status demo test test-unit test-integration lint clean bench

help: ## Show the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON_BIN) >/dev/null || { echo "error: $(PYTHON_BIN) not found; install Python 3.11" >&2; exit 1; }
	@[ -x $(PY) ] || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install tandem with its dependencies

redis-server: ## Install redis-server (Debian/Ubuntu apt) when it is missing
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null || { echo "error: redis-server could not be installed; put one on PATH" >&2; exit 1; }

chromium: ## Install Debian's chromium (headless report screenshots in the tests) when it is missing
	@[ -x /usr/bin/chromium ] || { \
	  echo "installing chromium with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@[ -x /usr/bin/chromium ] || { echo "error: chromium could not be installed at /usr/bin/chromium" >&2; exit 1; }

up: venv redis-server ## Start the local Ray head (dashboard 127.0.0.1:8265) and redis-server
	$(PY) -m cluster.local up

down: ## Stop only what `make up` started (pid files in .run/)
	@if [ -x $(PY) ]; then $(PY) -m cluster.local down; else echo "nothing to stop (no .venv)"; fi

status: venv ## Show the local cluster's state
	$(PY) -m cluster.local status

demo: up ## Run the whole pipeline on synthetic data, deploy the endpoints, print curl examples
	bash cluster/demo.sh

test: venv redis-server chromium ## Run the test suite (unit + integration)
	$(PY) -m pytest -q

test-unit: venv ## Run the fast unit tests only
	$(PY) -m pytest -q -m unit

test-integration: venv redis-server chromium ## Run the integration tests only
	$(PY) -m pytest -q -m integration

lint: venv ## ruff, the layer contract (tests/unit/test_layers.py) and mypy
	$(PY) -m ruff check models serve jobs cluster bench tests pipelines store
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layers.py
	$(PY) -m mypy --strict models serve store

clean: down ## Remove generated data, artifacts and the runtime dir (keeps .venv)
	rm -rf data artifacts .run
