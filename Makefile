# Every target creates .venv on first use and installs the project into it.
# A second run installs nothing: the stamp depends on pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN ?= torch==2.13.0
PIP_EXTRA ?=
DEVICE ?= cpu
PROFILE ?= ci
RESULTS ?= results
RUNS ?= 10
PYTEST_ARGS ?=
# Test processes (pytest-xdist): one per CPU, at most 8 (each holds its own torch); 0 (the choice on one
# CPU) runs them in pytest's own process.
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 8 ] && n=8; [ $$n -le 1 ] && n=0; echo $$n)
# Verification worker processes (python -m verification --jobs): one per CPU, at most 8; 1 verifies in
# the command's own process.
VERIFY_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 8 ] && n=8; echo $$n)

.DEFAULT_GOAL := help
.PHONY: help install verify verify-thorough test lint format bench bench-compare bench-baseline kernels \
        report report-check train clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_EXTRA) "$(TORCH_PIN)"
	$(PY) -m pip install --quiet $(PIP_EXTRA) -e ".[dev]" "$(TORCH_PIN)"
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project (done by every target)

verify: $(STAMP) ## Verify every module's gradients (ci profile) and write the verification report
	$(PY) -m verification --profile $(PROFILE) --device $(DEVICE) --jobs $(VERIFY_JOBS) --json $(RESULTS)/verification.json
	$(PY) -m reports --only verification --results $(RESULTS)

verify-thorough: ## Verify with many more cases per module
	$(MAKE) verify PROFILE=thorough

test: $(STAMP) ## Run the whole test suite (framework, verifier and its mutants, benchmarks once, reports)
	$(PY) -m pytest -n $(TEST_JOBS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP) ## Time forward/backward of every module against torch.nn (DEVICE=cuda for the GPU)
	$(PY) -m benchmarks --device $(DEVICE) --json $(RESULTS)/benchmarks-$(DEVICE).json
	$(PY) -m reports --only benchmarks --results $(RESULTS)

bench-baseline: $(STAMP) ## Save the latest benchmark run as the baseline for bench-compare
	$(PY) -m benchmarks.compare --save $(RESULTS)/benchmarks-$(DEVICE).json benchmarks/baseline-$(DEVICE).json

bench-compare: $(STAMP) ## Compare framework/torch ratios against the saved baseline; fail on a regression
	@test -f benchmarks/baseline-$(DEVICE).json || \
	  { echo "no baseline benchmarks/baseline-$(DEVICE).json: run make bench DEVICE=$(DEVICE), then make bench-baseline DEVICE=$(DEVICE)" >&2; exit 2; }
	$(PY) -m benchmarks --device $(DEVICE) --json $(RESULTS)/benchmarks-$(DEVICE).json
	$(PY) -m benchmarks.compare --recheck $(RESULTS)/benchmarks-$(DEVICE).json benchmarks/baseline-$(DEVICE).json

kernels: $(STAMP) ## Count the kernels each module launches on a GPU, framework against torch (no GPU needed)
	$(PY) -m benchmarks.kernels

train: $(STAMP) ## Run the disk-classification experiment, framework against torch (RUNS=10, DEVICE=cuda for the GPU)
	$(PY) -m experiment --runs $(RUNS) --device $(DEVICE) --json $(RESULTS)/training.json
	$(PY) -m reports --only training --results $(RESULTS)

report: $(STAMP) ## Render every HTML page from the latest results into $(RESULTS)/html
	$(PY) -m reports --results $(RESULTS)

report-check: report ## Render, then screenshot every page in headless Chromium (installs chromium)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) -m reports.browser_check --results $(RESULTS)

clean: ## Remove the virtualenv, caches and generated results
	rm -rf $(VENV) $(RESULTS) .pytest_cache .ruff_cache .hypothesis .benchmarks *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
