# jp-rerank developer commands. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test workers (pytest-xdist): the suite waits on subprocesses, servers and Ray about a fifth of the time, so two
# workers on two cores took 12.9 min instead of 16.5. Every Ray test runs in one worker (tests/distributed/conftest.py).
TEST_WORKERS ?= 2
# Real models rebuilt offline from PyPI wheels by ../shared/tools (see ../shared/models/README.md). When they are
# there, the demo uses them: a real trained Japanese reranker and real mE5-small embeddings, no hub needed.
OFFLINE_MODELS ?= $(or $(JP_RERANK_OFFLINE_MODELS),$(HOME)/.cache/jp-rerank-offline)
SHARED_TOOLS ?= ../shared/tools/build_offline_models.py
# Evaluated by the shell when the demo starts (after offline-models may have built them).
DEMO_MODELS = $$(m="$(OFFLINE_MODELS)"; \
	[ -f "$$m/ja-ce-mini/config.json" ] && echo --reranker "$$m/ja-ce-mini"; \
	[ -f "$$m/multilingual-e5-small-q4dq/config.json" ] && echo --embedder "$$m/multilingual-e5-small-q4dq")

.DEFAULT_GOAL := help

.PHONY: help setup demo demo-models test test-fast lint bench offline-models clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[all]" --group dev
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install torch 2.13.0 (CPU), the project with all extras, and dev tools

offline-models: $(STAMP) ## Rebuild the real offline models (ja-ce-mini, mE5-small) from ../shared into OFFLINE_MODELS
	@if [ -f $(SHARED_TOOLS) ]; then \
		echo "building the real offline models into $(OFFLINE_MODELS) (about a minute, once)"; \
		HF_HUB_OFFLINE=1 $(PY) $(SHARED_TOOLS) --out $(OFFLINE_MODELS) --wheels $(OFFLINE_MODELS)/wheels \
			|| echo "could not build the offline models; the demo runs without them"; \
	else echo "no $(SHARED_TOOLS): the demo runs with the default models (hub or HF cache)"; fi

demo-models: $(STAMP)
	@[ -f "$(OFFLINE_MODELS)/ja-ce-mini/config.json" ] || [ ! -f $(SHARED_TOOLS) ] || \
		$(MAKE) --no-print-directory offline-models

demo: demo-models ## Run the demo RAG pipeline on the bundled Japanese documents
	$(VENV)/bin/jp-rerank demo $(DEMO_MODELS) $(DEMO_ARGS)

test: $(STAMP) ## Run the test suite (offline; loopback only): what CI runs
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: $(STAMP) ## The edit loop: the suite without the slow, Ray and training tests
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow and not ray and not train" $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (style, docstrings), mypy (types), import-linter (the layering of the engine)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP) ## Run the side-by-side speed benchmark (see benchmarks/README.md)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
