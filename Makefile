# The two commands of the README: `make demo` (set up, run the default grid, build the report) and
# `make test` (set up, run the test suite). Both install everything they need into .venv from scratch.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CORES ?= $(shell nproc)
PYTEST_ARGS ?= -m "not slow"
# `make ui` serves this machine only; `make ui UI_HOST=0.0.0.0` exposes the store to the network.
UI_HOST ?= 127.0.0.1
UI_PORT ?= 5000
# The default grid's own directory, results/<config.yaml's experiment>/: its tables, figures and reports.
DEMO := results/$(shell sed -n 's/^experiment: *\([A-Za-z0-9_.-]*\).*/\1/p' config.yaml)
UI_STORE = $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/results/mlflow/mlflow.db}

.PHONY: venv demo test test-all lint format ui clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)
	$(BIN)/snakemake --report $(DEMO)/report.html
	@echo "report: $(DEMO)/report.pdf (and $(DEMO)/report.html); MLflow: make ui"

test: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-all: venv
	$(BIN)/pytest -q -m ""

lint: venv
	$(BIN)/ruff check src tests workflow benchmarks
	$(BIN)/ruff format --check src tests workflow benchmarks
	$(BIN)/snakemake --lint

format: venv
	$(BIN)/ruff format src tests workflow benchmarks
	$(BIN)/ruff check --fix src tests workflow benchmarks

ui: venv
	$(BIN)/python -m ctrlsparse.tracking.ui --tracking-uri "$(UI_STORE)" --url http://$(UI_HOST):$(UI_PORT)
	$(BIN)/mlflow ui --backend-store-uri "$(UI_STORE)" --host $(UI_HOST) --port $(UI_PORT)

clean-results:  # everything under results/ but its README (every grid's runs, reports and the MLflow store)
	rm -rf .snakemake $(filter-out results/README.md results/.gitkeep,$(wildcard results/*))
