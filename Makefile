# fillrobust: one-command build, test, reproduction and benchmarks.
# Every target builds .venv from the pinned lock when it is absent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# Local wheel folders of this kind of machine (torch/torchvision live there);
# used as find-links when present, ignored elsewhere (then PyPI serves them).
LOCAL_WHEELS := $(wildcard /opt/pypi-more/files /opt/wheels)
FIND_LINKS := $(foreach d,$(LOCAL_WHEELS),--find-links $(d))
export DVC_NO_ANALYTICS := 1
export PYTHONHASHSEED := 0
export PATH := $(CURDIR)/$(BIN):$(PATH)
CORES ?= all

.PHONY: venv lock test test-fast reproduce report pull lint bench clean-results

venv: $(VENV)/.built

$(VENV)/.built: requirements.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode $(FIND_LINKS) -r requirements.lock
	# torchattacks 3.5.1 pins an old requests; it needs nothing we lack.
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --no-deps torchattacks==3.5.1
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --no-deps -e .
	touch $@

lock: requirements.in constraints.txt
	$(BIN)/uv pip compile requirements.in -c constraints.txt -o requirements.lock \
	  --python-version 3.11 $(FIND_LINKS) --quiet --no-header

# Two xdist workers: the first test that needs the shared tiny run of the whole
# DAG builds it once (tests/conftest.py, under a file lock; its Snakemake runs
# two jobs at a time), the other worker runs the rest meanwhile.
PYTEST := $(BIN)/python -m pytest -q -n 2

test: venv
	$(BIN)/ruff check src tests benchmarks
	$(PYTEST) --durations=20 tests

# The edit loop: unit tests only (no Snakemake / DVC runs), under 2 minutes.
test-fast: venv
	$(BIN)/ruff check src tests benchmarks
	$(PYTEST) -m "not slow" tests/unit

# One dry run counts the jobs of the whole DAG; the wrapper then prints
# "[k/N jobs, elapsed, ETA]" across all DVC stages (src/fillrobust/progress.py).
reproduce: venv
	$(BIN)/python -m fillrobust.progress $(BIN)/dvc repro
	@echo "Tables: results/tables/  Figures: results/figures/"
	@$(BIN)/python -m fillrobust claims-summary results/tables/claims.csv
	@echo "Report: $(CURDIR)/results/report/index.html  (what moved: dvc metrics diff, dvc plots diff)"

# Rebuild the results report alone from the tables, figures and models already
# there (no upstream job runs, even when params changed since; `make reproduce`
# brings those up to date first).
report: venv
	$(BIN)/snakemake report --allowed-rules report --forcerun report --cores 1
	@echo "Report: $(CURDIR)/results/report/index.html"

# dvc pull, then mark the pulled outputs up to date for Snakemake (docs/operations.md, "Sharing with DVC").
pull: venv
	bash workflow/scripts/pull.sh

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/snakemake --lint

bench: venv
	$(BIN)/python benchmarks/run_all.py $(BENCH)
