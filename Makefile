# Sluice: the front door. `make demo` and `make test` work on a fresh machine
# with only the Rust toolchain and Python 3; everything else is installed here.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

.PHONY: demo
demo: ## Run the pipeline locally on generated sample data and show the results
	bash scripts/demo.sh

.PHONY: bench
bench: ## Measure ingest throughput, peak RSS, cold start and zip sizes (prints figures)
	bash scripts/bench.sh

.PHONY: test
test: lint unit ## Run every test: lint, unit and integration

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: unit
unit: ## Unit and integration tests (no services needed)
	$(CARGO) test --workspace

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: clean
clean: ## Remove build output
	$(CARGO) clean
