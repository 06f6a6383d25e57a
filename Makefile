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

# --- build once, deploy anywhere -------------------------------------------------
ENV ?= local
BRANCH ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
STAGE ?= curate
CODE_VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
DIST := $(CURDIR)/dist/lambda

.PHONY: build
build: ## Build the Lambda zips once with cargo lambda (installed into .venv/tools): dist/lambda/<stage>/bootstrap.zip
	bash scripts/build.sh

.PHONY: build-host
build-host: ## The same zips from a host release build (what host-mode LocalStack runs)
	bash scripts/build.sh --host

.PHONY: deploy
deploy: ## Apply infra/envs/$(ENV) (local|dev|prod) with the zips in dist/lambda; dev/prod need AWS credentials and backend.hcl
ifeq ($(ENV),local)
	$(INFRA) deploy local -var 'zip_dir=$(DIST)' -var 'code_version=$(CODE_VERSION)' $(ghost_var) $(TF_ARGS)
else
	terraform -chdir=infra/envs/$(ENV) init -input=false -backend-config=backend.hcl
	terraform -chdir=infra/envs/$(ENV) apply -input=false -var 'zip_dir=$(DIST)' -var 'code_version=$(CODE_VERSION)' $(TF_ARGS)
endif

.PHONY: ghost
ghost: ## Deploy STAGE (comma-separated) of this build as a ghost of prod, in Terraform workspace BRANCH (AWS)
	terraform -chdir=infra/envs/ghost init -input=false -backend-config=backend.hcl
	terraform -chdir=infra/envs/ghost workspace select -or-create $(BRANCH)
	terraform -chdir=infra/envs/ghost apply -input=false -var 'zip_dir=$(DIST)' -var 'code_version=$(CODE_VERSION)' \
	  -var 'stages=[$(subst $(space),$(comma),$(patsubst %,"%",$(subst $(comma), ,$(STAGE))))]' $(TF_ARGS)

.PHONY: ghost-destroy
ghost-destroy: ## Destroy the ghost environment of BRANCH
	terraform -chdir=infra/envs/ghost init -input=false -backend-config=backend.hcl
	terraform -chdir=infra/envs/ghost workspace select $(BRANCH)
	terraform -chdir=infra/envs/ghost destroy -input=false -var 'zip_dir=$(DIST)' $(TF_ARGS)
