# jp-rerank developer commands. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help setup demo test lint bench clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-8s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[all]" --group dev
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install torch 2.13.0 (CPU), the project with all extras, and dev tools

demo: $(STAMP) ## Run the demo RAG pipeline on the bundled Japanese documents
	$(VENV)/bin/jp-rerank demo $(DEMO_ARGS)

test: $(STAMP) ## Run the test suite (offline; loopback only)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (style, docstrings) and mypy (types)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP) ## Run the benchmarks (see benchmarks/README.md)
	$(VENV)/bin/jp-rerank bench $(BENCH_ARGS)

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
