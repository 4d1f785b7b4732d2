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

.PHONY: help venv system-deps redis-server chromium up down status demo test test-unit test-integration test-chaos lint clean bench

help: ## Show the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON_BIN) >/dev/null || { echo "error: $(PYTHON_BIN) not found; install Python 3.11" >&2; exit 1; }
	@[ -x $(PY) ] || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install tandem with its dependencies

# Debian packages the stack runs (the package name is the binary's): Redis, and wrk for the
# demo's closing load run and bench.serve.
SYSTEM_DEPS := redis-server wrk

system-deps: ## Install redis-server and wrk (Debian/Ubuntu apt) when missing
	@missing=""; for b in $(SYSTEM_DEPS); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@for b in $(SYSTEM_DEPS); do command -v $$b >/dev/null || { echo "error: $$b could not be installed; put one on PATH" >&2; exit 1; }; done

redis-server: system-deps

chromium: ## Install Debian's chromium (headless report screenshots in the tests) when it is missing
	@[ -x /usr/bin/chromium ] || { \
	  echo "installing chromium with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@[ -x /usr/bin/chromium ] || { echo "error: chromium could not be installed at /usr/bin/chromium" >&2; exit 1; }

up: venv system-deps ## Start the local Ray head (HAProxy ingress; TANDEM_INGRESS=python for Serve's proxy) and redis-server
	$(PY) -m cluster.local up

down: ## Stop everything `make up` started: pid files in .run/, then every process with the stack's tag
	@if [ -x $(PY) ]; then $(PY) -m cluster.local down; else echo "nothing to stop (no .venv)"; fi

status: venv ## Show the local cluster's state
	$(PY) -m cluster.local status

demo: up ## Run the whole pipeline on synthetic data, deploy the endpoints, curl them, 10 s of wrk at 2 and 4 connections
	bash cluster/demo.sh

test: venv system-deps chromium ## Run the test suite (unit + integration)
	$(PY) -m pytest -q --durations=12

test-unit: venv ## Run the fast unit tests only
	$(PY) -m pytest -q -m unit

test-integration: venv system-deps chromium ## Run the integration tests only
	$(PY) -m pytest -q -m integration

test-chaos: venv system-deps ## Fuzz (schemathesis), hostile bodies, faults and tenants against a private default stack
	$(PY) -m pytest -q -m chaos tests/chaos

lint: venv ## ruff, the layer contract (tests/unit/test_layers.py) and mypy
	$(PY) -m ruff check models serve jobs cluster bench tests pipelines store
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layers.py
	$(PY) -m mypy --strict models serve store

clean: down ## Remove generated data, artifacts and the runtime dir (keeps .venv)
	rm -rf data artifacts .run
