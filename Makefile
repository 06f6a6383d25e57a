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
test: lint unit tf-check e2e ## Run every test: lint, unit, integration, Terraform checks, end to end in LocalStack

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: unit
unit: ## Unit and integration tests (no services needed)
	$(CARGO) test --workspace --exclude sluice-e2e

.PHONY: e2e
e2e: ## End to end in LocalStack: start it, deploy infra/envs/local (+ ghost curate), run tests/e2e
	bash scripts/e2e.sh

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: clean
clean: ## Remove build output
	$(CARGO) clean

# --- infrastructure (Terraform in infra/, LocalStack) ---------------------------
# Where a pre-mirrored provider folder exists (CI, dev machines without the
# Terraform registry), Terraform installs from it; elsewhere from the registry.
ifneq ($(wildcard /opt/tf-plugins),)
export TF_CLI_CONFIG_FILE := $(CURDIR)/infra/terraform.rc
endif
INFRA := bash scripts/infra.sh
# make deploy-local GHOST_STAGES=curate (comma-separated) adds ghost stages beside prod.
GHOST_STAGES ?=
TF_ARGS ?=
comma := ,
space := $(subst ,, )
ghost_var = $(if $(GHOST_STAGES),-var 'ghost_stages=[$(subst $(space),$(comma),$(patsubst %,"%",$(subst $(comma), ,$(GHOST_STAGES))))]')

.PHONY: localstack-up
localstack-up: ## Start LocalStack (Docker if an engine answers, else host mode; LOCALSTACK_PORT, default 4566)
	bash tests/localstack/localstack.sh up

.PHONY: localstack-down
localstack-down: ## Stop LocalStack and everything it started
	bash tests/localstack/localstack.sh down

.PHONY: lambda-zips
lambda-zips: ## Zip the host-built stage binaries as target/lambda/<stage>/bootstrap.zip (PROFILE=debug|release)
	python3 scripts/zip-host.py --profile $(or $(PROFILE),debug)

.PHONY: deploy-local
deploy-local: ## Apply infra/envs/local to the running LocalStack (zips from target/lambda/*/bootstrap.zip)
	$(INFRA) deploy local $(ghost_var) $(TF_ARGS)

.PHONY: destroy-local
destroy-local: ## Destroy what deploy-local created
	$(INFRA) destroy local $(TF_ARGS)

.PHONY: tf-fmt
tf-fmt: ## terraform fmt -recursive infra
	$(INFRA) fmt

.PHONY: tf-check
tf-check: ## Terraform fmt check, validate of every env, ghost IAM check on a plan, and its unit tests
	$(INFRA) fmt-check
	$(INFRA) validate
	$(INFRA) check-unit
	$(INFRA) plan-ghost-check
