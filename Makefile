# lookalike developer tasks. `make help` lists them.
# Where models and sample data come from are settings: here they default to the shared folder
# beside the checkout when it exists; elsewhere models are fetched from their public sources and
# the sample catalogue is downloaded from GitHub.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= $(abspath ../shared)
MODELS_MIRROR ?= $(if $(wildcard $(SHARED)/models),$(SHARED)/models,)
SAMPLE_DATA ?= $(if $(wildcard $(SHARED)/data/grocery),$(SHARED)/data/grocery,)
export LOOKALIKE_CACHE_DIR ?= $(abspath .cache/lookalike)
export LOOKALIKE_MODELS_MIRROR := $(MODELS_MIRROR)
export LOOKALIKE_SAMPLE_DATA := $(SAMPLE_DATA)
export LOOKALIKE_DATA_DIR ?= $(SHARED)/data
INDEX ?= demo-index
PYTEST_ARGS ?=

.PHONY: help setup browser models demo serve test test-fast lint format bench clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is the CPU build (a looser pin pulls GB of CUDA wheels); needed only to export models
	$(PY) -m pip install -q -e ".[all]"
	touch $@

setup: $(VENV)/.installed ## create the virtual environment and install lookalike with its extras

browser: ## install Debian's chromium for the browser tests when it is missing (needs root + apt)
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install Debian's chromium package (browser tests will fail)"; fi; }

models: setup ## fetch (or export) the default models into the cache
	$(VENV)/bin/lookalike models pull efficientnet-lite2

demo: models ## set up, index the sample grocery catalogue, search with a shopper's photo
	$(VENV)/bin/lookalike sample --out sample
	$(VENV)/bin/lookalike index sample/catalogue.jsonl --index $(INDEX)
	$(VENV)/bin/lookalike search "$$(sed -n 2p sample/queries.csv | cut -d, -f1)" --index $(INDEX) -k 5
	@echo "right answer: item $$(sed -n 2p sample/queries.csv | cut -d, -f2)"

serve: models ## web page and HTTP API for the demo index on http://127.0.0.1:8000
	$(VENV)/bin/lookalike serve --index $(INDEX)

test: models browser ## run the whole test suite (unit, contract, end-to-end on real photos)
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

test-fast: setup ## unit and contract tests only
	$(VENV)/bin/pytest -q -m "not e2e" $(PYTEST_ARGS)

lint: setup ## ruff, the type checker (mypy), structure measures (module size, cycles, private names, Any)
	$(VENV)/bin/ruff check lookalike tests bench tools
	$(VENV)/bin/ruff format --check lookalike tests bench tools
	$(VENV)/bin/mypy
	$(PY) tools/structure.py lookalike --clients bench --any

format: setup ## ruff format
	$(VENV)/bin/ruff format lookalike tests bench
	$(VENV)/bin/ruff check --fix lookalike tests bench

bench: models ## indexing throughput and query latency on the sample catalogue
	$(PY) bench/bench_index_query.py --out docs/bench-latest.json

clean: ## remove the environment, caches and demo index
	rm -rf $(VENV) .cache sample $(INDEX) .pytest_cache .ruff_cache
