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
bench: ## Sluice vs pyarrow, duckdb, polars side by side (ingest, curate, profile), cold start, zip sizes (BENCH_SMALL=1: 100 MB files)
	bash scripts/bench.sh

.PHONY: test
test: localstack-install lint-workflows secret-scan lint-rust hooks-check unit-tests ## Run every test: lint, hooks check, unit, integration, simulation, report in Chromium, Terraform checks, end to end in LocalStack
	@# The checks that need no LocalStack but the CPU (the simulation, the
	@# demo build's clippy) or little of anything (the report, Terraform) run
	@# inside make e2e, beside its fault-proxy test, which mostly waits.
	E2E_BESIDE='$(MAKE) --no-print-directory sim-check lint-demo report-check tf-check' $(MAKE) --no-print-directory e2e

# make test's first step: LocalStack's virtualenv (about two minutes of pip on
# a fresh clone, mostly downloads) installs in the background while the build
# runs; `make e2e` waits for it (a lock) and reinstalls if it failed.
.PHONY: localstack-install
localstack-install: ## Install LocalStack's virtualenv (.venv/localstack) in the background; its log: target/localstack-install.log
	@mkdir -p target
	@nohup bash tests/localstack/localstack.sh install >target/localstack-install.log 2>&1 </dev/null &

.PHONY: lint
lint: lint-workflows secret-scan lint-rust lint-demo ## cargo fmt --check, clippy with warnings denied, actionlint on the workflows, secret scan

.PHONY: lint-rust
lint-rust: ## cargo fmt --check, and clippy of the workspace with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --features sluice-e2e/localstack -- -D warnings

.PHONY: lint-demo
lint-demo: ## clippy of make demo's build of the CLI (no AWS SDK): it must keep compiling, warning-free
	$(CARGO) clippy -p sluice-cli --no-default-features --all-targets -- -D warnings

.PHONY: lint-workflows
lint-workflows: ## actionlint (+ shellcheck on run: scripts) on .github/workflows, both installed into .venv/tools
	bash scripts/lint-workflows.sh

.PHONY: secret-scan
secret-scan: ## detect-secrets on every tracked file against .secrets.baseline (installed into .venv/tools)
	bash scripts/secret-scan.sh --tree

.PHONY: hooks
hooks: ## Use the git hooks in .githooks (pre-commit: fmt, secret scan; pre-push: secret scan, clippy, fast tests)
	bash scripts/install-hooks.sh

.PHONY: hooks-check
hooks-check: ## Prove in a throwaway repo that the hooks refuse a planted AWS key and pass a clean change
	bash scripts/test-hooks.sh

.PHONY: unit
# Every cargo command here and in scripts/ selects --workspace, so the tree is
# compiled once with one feature set (`-p` would compile it again). The sim's
# run adds `--bin sluice` only to build the same set of units as the first line.
unit: unit-tests sim-check ## Unit and integration tests (no services needed; the fuzz properties at small case counts), then the simulation (2000 seeds, about 3 minutes on 2 cores) with its figures

.PHONY: unit-tests
unit-tests: ## Unit and integration tests, without the simulation
	$(CARGO) test --workspace -- --exact --skip simulate

.PHONY: sim-check
sim-check: ## The simulation at its default 2000 seeds, with its summary line
	$(CARGO) test --workspace --test sim --bin sluice -- --exact simulate --nocapture

# `make unit` runs 2000 seeds of the simulation (the default of
# tests/sim/tests/sim.rs) and prints its summary line; this is the long soak.
# SIM_STRICT=0 reports without failing.
SEEDS ?= 100000
.PHONY: sim
sim: ## Deterministic simulation soak: SEEDS seeds (default 100000) of faults, crashes and redelivery against the oracle
	SIM_SEEDS=$(SEEDS) $(CARGO) test --workspace --test sim --bin sluice -- --exact simulate --nocapture

# `make unit` runs the property tests (*/tests/it/fuzz_*.rs) with small case
# counts and a fixed seed; this is the long run, with a new seed each time
# (printed, so that a failure can be repeated with FUZZ_SEED=...).
FUZZ_CASES ?= 20000
FUZZ_SEED ?=
.PHONY: fuzz
fuzz: ## Property-based fuzzing (proptest) of trigger, key, contract and CSV/JSONL row decoding: FUZZ_CASES (default 20000) cases per property, FUZZ_SEED (default: random, printed)
	@seed="$(FUZZ_SEED)"; seed="$${seed:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"; \
	echo "fuzz: $(FUZZ_CASES) cases per property, seed $$seed (repeat with: make fuzz FUZZ_CASES=$(FUZZ_CASES) FUZZ_SEED=$$seed)"; \
	export SLUICE_FUZZ_CASES=$(FUZZ_CASES) SLUICE_FUZZ_SEED=$$seed; \
	$(CARGO) test -p sluice --test it fuzz_; \
	$(CARGO) test -p sluice-ingest --test it fuzz_rows::

.PHONY: report-check
report-check: ## Write `sluice report` of a generated local run and check it in headless Chromium (installed if missing)
	DEMO_DEV_BUILD=1 DEMO_DIR=target/report-demo bash scripts/demo.sh >target/report-demo.log
	bash scripts/report-check.sh --local target/report-demo target/report-local.png

.PHONY: phoenix-local
phoenix-local: ## Destroy the LocalStack env, re-apply it, replay the landing bucket; outputs must be byte-identical
	bash scripts/phoenix.sh

.PHONY: e2e
e2e: ## End to end in LocalStack: start it, deploy infra/envs/local (+ ghost curate), run tests/e2e, report check, phoenix
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
tf-check: ## Terraform fmt check, validate of every env, module tests (queue timing), ghost IAM check on a plan, and its unit tests
	$(INFRA) fmt-check
	$(INFRA) validate
	$(INFRA) test-modules
	$(INFRA) check-unit
	$(INFRA) plan-ghost-check

# --- build once, deploy anywhere -------------------------------------------------
ENV ?= local
BRANCH ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
STAGE ?= curate
CODE_VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# The zips to deploy: <ZIP_DIR>/<stage>/bootstrap.zip (CD passes the downloaded CI artifact).
ZIP_DIR ?= $(CURDIR)/dist/lambda
DIST := $(abspath $(ZIP_DIR))
# make ghost STAGES=curate,profile (STAGE=… as before; both comma-separated).
STAGES ?= $(STAGE)

.PHONY: build
build: ## Build the Lambda zips once with cargo lambda (installed into .venv/tools): dist/lambda/<stage>/bootstrap.zip
	bash scripts/build.sh

.PHONY: build-host
build-host: ## The same zips from a host release build (what host-mode LocalStack runs)
	bash scripts/build.sh --host

.PHONY: deploy
deploy: ## Apply infra/envs/$(ENV) (local|dev|prod) with the zips in ZIP_DIR (dist/lambda); dev/prod need AWS credentials and backend.hcl
ifeq ($(ENV),local)
	$(INFRA) deploy local -var 'zip_dir=$(DIST)' -var 'code_version=$(CODE_VERSION)' $(ghost_var) $(TF_ARGS)
else
	terraform -chdir=infra/envs/$(ENV) init -input=false -backend-config=backend.hcl
	terraform -chdir=infra/envs/$(ENV) apply -input=false -var 'zip_dir=$(DIST)' -var 'code_version=$(CODE_VERSION)' $(TF_ARGS)
endif

.PHONY: ghost
ghost: ## Deploy STAGE or STAGES (comma-separated) of this build as a ghost of prod, in Terraform workspace BRANCH (AWS)
	terraform -chdir=infra/envs/ghost init -input=false -backend-config=backend.hcl
	terraform -chdir=infra/envs/ghost workspace select -or-create $(BRANCH)
	terraform -chdir=infra/envs/ghost apply -input=false -var 'zip_dir=$(DIST)' -var 'code_version=$(CODE_VERSION)' \
	  -var 'stages=[$(subst $(space),$(comma),$(patsubst %,"%",$(subst $(comma), ,$(STAGES))))]' $(TF_ARGS)

.PHONY: ghost-destroy
# Destroy removes whatever the workspace's state holds; the configuration only
# has to evaluate, so it gets every stage and stand-in zips.
ghost-destroy: ## Destroy the ghost environment of BRANCH and its workspace (none: nothing to do)
	terraform -chdir=infra/envs/ghost init -input=false -backend-config=backend.hcl
	@if ! terraform -chdir=infra/envs/ghost workspace list | grep -xE '\*? *$(BRANCH)' >/dev/null; then \
	  echo "ghost-destroy: no workspace $(BRANCH): nothing to destroy"; exit 0; fi; \
	set -x; \
	$(INFRA) dummy-zips $(CURDIR)/.terraform-check/destroy-zips; \
	terraform -chdir=infra/envs/ghost workspace select $(BRANCH); \
	terraform -chdir=infra/envs/ghost destroy -input=false -var 'zip_dir=$(CURDIR)/.terraform-check/destroy-zips' \
	  -var 'stages=["ingest","curate","profile"]' -var 'code_version=destroy' $(TF_ARGS); \
	terraform -chdir=infra/envs/ghost workspace select default; \
	terraform -chdir=infra/envs/ghost workspace delete $(BRANCH)
