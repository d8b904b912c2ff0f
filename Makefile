# Hercules developer and deployment targets. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGINS := plugins/transport_tcp plugins/store_fs plugins/store_zstd

.DEFAULT_GOAL := help
.PHONY: help venv run test

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

venv: $(STAMP) ## Create .venv with Hercules, its plugins and the test tools

run: $(STAMP) ## Run a local cluster (master, 3 chunkservers, gateway; data under ./data)
	$(BIN)/hercules dev --data ./data

test: $(STAMP) ## Install everything into .venv and run the test suite
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
