# hookstream: `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install browser dev test test-unit bench screenshots lint kafka-up kafka-down clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## Create the virtualenv and install hookstream with dev tools

dev: install  ## Local Kafka + worker + demo receiver + demo webhook and events (Ctrl-C stops)
	$(VENV)/bin/hookstream dev

browser:  ## Debian's Chromium, for the console's browser test (root, or already installed)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

test: install browser  ## Everything from nothing: deps, lint, Kafka jars, broker, the whole suite
	$(VENV)/bin/ruff check streams tests
	$(VENV)/bin/mypy
	$(PY) -m pytest -p no:cacheprovider -q -n 2 tests/unit
	$(PY) -m pytest -p no:cacheprovider -q -n 2 --dist loadscope --no-loadscope-reorder tests/integration

bench: install  ## Benchmarks against the local broker (scenarios t, a-e, f1, f3; g on request; README Performance); JSON in bench/results/
	$(PY) -m localdev.bench

test-unit: install  ## No broker: the pure core, the stage loop and both handlers (under a minute)
	$(PY) -m pytest -p no:cacheprovider -q -n 2 tests/unit

screenshots: install browser  ## Refresh the console's pictures in docs/ (runs its browser test)
	HOOKSTREAM_SCREENSHOTS_DIR=docs $(PY) -m pytest -p no:cacheprovider -q tests/integration/test_console.py

lint: install  ## ruff and mypy
	$(VENV)/bin/ruff check streams tests
	$(VENV)/bin/mypy

kafka-up: install  ## Start the local broker
	$(VENV)/bin/hookstream kafka up

kafka-down: install  ## Stop the local broker
	$(VENV)/bin/hookstream kafka down

clean:  ## Remove the virtualenv and local broker data
	-$(VENV)/bin/hookstream kafka down
	rm -rf $(VENV) .hookstream
