#!/usr/bin/env bash
# Terraform chores for infra/ (the Makefile's tf-* and deploy targets call these).
#
#   scripts/infra.sh fmt-check           terraform fmt -check -recursive infra
#   scripts/infra.sh fmt                 terraform fmt -recursive infra
#   scripts/infra.sh validate            init -backend=false + validate every infra/envs/*
#   scripts/infra.sh plan-ghost-check    plan envs/ghost offline, prove ghosts write nothing in prod
#   scripts/infra.sh check-unit          unit tests of infra/checks
#   scripts/infra.sh test-modules        terraform test of every infra/modules/* with a tests/ folder (mocked provider)
#   scripts/infra.sh zip                 package target/debug binaries as target/lambda/<stage>/bootstrap.zip
#   scripts/infra.sh deploy local [terraform apply args...]    apply envs/local to the running LocalStack
#   scripts/infra.sh destroy local [terraform destroy args...]
#   scripts/infra.sh output local        terraform output -json
#   scripts/infra.sh dummy-zips DIR      stand-in DIR/<stage>/bootstrap.zip (plans, destroy)
#
# SLUICE_TF_WORKSPACE=NAME makes deploy, destroy and output act on a second
# deployment of envs/local beside the first, in the Terraform workspace NAME,
# with every resource named sluice-NAME-… (make e2e runs its fault-proxy test
# on one, beside the report check and phoenix on the first).
#
# LOCALSTACK_PORT (default 4566) picks LocalStack's port. Where /opt/tf-plugins
# exists (a pre-mirrored provider, no registry), Terraform installs from it
# through infra/terraform.rc; elsewhere from the registry, with a shared plugin
# cache in .terraform-cache so the ~700 MB provider is fetched once.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$REPO/infra"
PORT="${LOCALSTACK_PORT:-4566}"
ENDPOINT="http://127.0.0.1:$PORT"

say() { echo "infra: $*"; }
die() { echo "infra: $*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME:-$(date +%s.%N)}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

command -v terraform >/dev/null 2>&1 || die "terraform is not installed (https://developer.hashicorp.com/terraform/install)"

if [[ -d /opt/tf-plugins ]]; then
  # The mirror is an unpacked layout: init symlinks the provider, nothing is copied.
  export TF_CLI_CONFIG_FILE="$INFRA/terraform.rc"
else
  export TF_PLUGIN_CACHE_DIR="${TF_PLUGIN_CACHE_DIR:-$REPO/.terraform-cache}"
  mkdir -p "$TF_PLUGIN_CACHE_DIR"
  # A TF_CLI_CONFIG_FILE naming a missing file only earns warnings; drop it.
  if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -f "$TF_CLI_CONFIG_FILE" ]]; then unset TF_CLI_CONFIG_FILE; fi
fi
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

tf() { terraform "$@"; }

init_quiet() {  # $1: dir, rest: init args
  local dir="$1" log
  shift
  log="$(mktemp)"
  # One init at a time per directory: make e2e deploys two workspaces of
  # envs/local at once, and their applies may overlap but not their inits.
  if ! flock "$dir/.init.lock" terraform -chdir="$dir" init -input=false -no-color "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "terraform init failed in ${dir#"$REPO"/}"
  fi
  rm -f "$log"
}

envs() { find "$INFRA/envs" -mindepth 1 -maxdepth 1 -type d | LC_ALL=C sort; }

cmd_fmt_check() {
  if ! tf fmt -check -recursive -diff "$INFRA"; then
    die "terraform files are not formatted: run make tf-fmt (terraform fmt -recursive infra)"
  fi
  say "fmt ok"
}

cmd_fmt() { tf fmt -recursive "$INFRA"; }

cmd_validate() {
  local dir
  for dir in $(envs); do
    init_quiet "$dir" -backend=false
    tf -chdir="$dir" validate -no-color >/dev/null || { tf -chdir="$dir" validate -no-color; die "validate failed: ${dir#"$REPO"/}"; }
    say "validate ok: ${dir#"$REPO"/}"
  done
}

# Stand-in zips for plans: only their hash matters.
dummy_zips() {  # $1: dir
  python3 - "$1" <<'EOF'
import sys, zipfile, pathlib
for s in ("ingest", "curate", "profile"):
    p = pathlib.Path(sys.argv[1], s, "bootstrap.zip")
    p.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
EOF
}

# Plan envs/ghost without credentials (offline_plan: no AWS call at all), on
# a copy whose backend is overridden to local, then run infra/checks/ghost_iam.py
# on the plan for a ghost curate alone and for all three stages.
cmd_plan_ghost_check() {
  local work="$REPO/.terraform-check/ghost" dir stages name
  rm -rf "$work"
  mkdir -p "$work/infra/envs"
  cp -R "$INFRA/modules" "$work/infra/"
  (cd "$INFRA/envs" && tar --exclude=.terraform --exclude='terraform.tfstate*' --exclude=.terraform.lock.hcl -cf - ghost) |
    (cd "$work/infra/envs" && tar -xf -)
  dir="$work/infra/envs/ghost"
  printf 'terraform {\n  backend "local" {}\n}\n' >"$dir/zz_check_backend_override.tf"
  dummy_zips "$work/zips"
  init_quiet "$dir"
  # A branch-like workspace name, to exercise the name clean-up.
  tf -chdir="$dir" workspace new -no-color "Feature_IAM-check" >/dev/null
  for stages in '["curate"]' '["ingest","curate","profile"]'; do
    name="$(tr -dc 'a-z,' <<<"$stages" | tr ',' '-')"
    tf -chdir="$dir" plan -input=false -no-color -lock=false -refresh=false \
      -var offline_plan=true -var account_id=123456789012 \
      -var "stages=$stages" -var code_version=check -var "zip_dir=$work/zips" \
      -out="$work/$name.plan" >"$work/$name.plan.log" 2>&1 ||
      { cat "$work/$name.plan.log" >&2; die "plan of envs/ghost (stages=$stages) failed"; }
    tf -chdir="$dir" show -json "$work/$name.plan" >"$work/$name.plan.json"
    say "ghost plan stages=$stages: $(grep -c 'will be created' "$work/$name.plan.log") resources"
    python3 "$INFRA/checks/ghost_iam.py" --min-policies "$(tr -cd ',' <<<"$stages" | wc -c | awk '{print $1 + 1}')" \
      "$work/$name.plan.json"
  done
}

cmd_check_unit() { python3 -m unittest discover -s "$INFRA/checks" -t "$INFRA/checks"; }

# `terraform test` of each module that has tests/*.tftest.hcl: plans against
# a mocked provider (no credentials), e.g. modules/stage refusing a queue
# visibility timeout below 6 x the function timeout + batching window.
cmd_test_modules() {
  local dir log
  for dir in "$INFRA"/modules/*/; do
    dir="${dir%/}"
    compgen -G "$dir/tests/*.tftest.hcl" >/dev/null || continue
    init_quiet "$dir" -backend=false
    log="$(mktemp)"
    if ! tf -chdir="$dir" test -no-color >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      die "terraform test failed: ${dir#"$REPO"/}"
    fi
    say "test ok: ${dir#"$REPO"/} ($(grep -c '^  run .*\.\.\. pass$' "$log") runs passed)"
    rm -f "$log"
  done
}

cmd_zip() { python3 "$REPO/scripts/zip-host.py" "$@"; }

# The id of the running LocalStack: a new one has none of the resources a
# Terraform state from before knows, so that state is dropped.
localstack_session() {
  curl -fsS --max-time 3 "$ENDPOINT/_localstack/info" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("session_id") or "")' 2>/dev/null
}

need_local() {
  [[ "${1:-}" == "local" ]] || die "only ENV=local is deployed from here; for dev/prod/ghost run terraform in infra/envs/<env> (see their main.tf)"
  curl -fsS --max-time 3 "$ENDPOINT/_localstack/health" >/dev/null 2>&1 ||
    die "LocalStack is not running on $ENDPOINT (make localstack-up)"
}

# The workspace that deploy, destroy and output act on (SLUICE_TF_WORKSPACE).
WORKSPACE="${SLUICE_TF_WORKSPACE:-default}"
[[ "$WORKSPACE" =~ ^[a-z][a-z0-9-]{0,15}$ ]] ||
  die "SLUICE_TF_WORKSPACE=$WORKSPACE: want 1-16 lower-case letters, digits and dashes, starting with a letter"
use_workspace() {  # Terraform reads TF_WORKSPACE (and creates it on apply)
  if [[ "$WORKSPACE" != default ]]; then export TF_WORKSPACE="$WORKSPACE"; fi
}
state_of() {  # $1: env dir
  if [[ "$WORKSPACE" == default ]]; then echo "$1/terraform.tfstate"; else echo "$1/terraform.tfstate.d/$WORKSPACE/terraform.tfstate"; fi
}
marker_of() {  # $1: env dir
  if [[ "$WORKSPACE" == default ]]; then echo "$1/.localstack-session"; else echo "$1/.localstack-session.$WORKSPACE"; fi
}

cmd_deploy() {
  local env="${1:-local}" dir session marker state start s missing=""
  shift || true
  need_local "$env"
  dir="$INFRA/envs/$env"
  use_workspace
  for s in ingest curate profile; do
    [[ -f "$REPO/target/lambda/$s/bootstrap.zip" ]] || missing+=" $s"
  done
  [[ -z "$missing" ]] || die "missing target/lambda/<stage>/bootstrap.zip for:$missing (scripts/zip-host.py, or cargo lambda build --output-format zip)"
  session="$(localstack_session)"
  marker="$(marker_of "$dir")"
  state="$(state_of "$dir")"
  if [[ -f "$state" && "$(cat "$marker" 2>/dev/null)" != "$session" ]]; then
    say "LocalStack was restarted since the last deploy: starting from an empty state"
    rm -f "$state" "$state.backup"
  fi
  init_quiet "$dir"
  echo "$session" >"$marker"
  start="$(now)"
  tf -chdir="$dir" apply -input=false -auto-approve -no-color -var "localstack_endpoint=$ENDPOINT" "$@"
  say "deployed envs/$env (workspace $WORKSPACE) to $ENDPOINT in $(since "$start") s"
}

cmd_destroy() {
  local env="${1:-local}" dir state start
  shift || true
  need_local "$env"
  dir="$INFRA/envs/$env"
  use_workspace
  state="$(state_of "$dir")"
  if [[ ! -f "$state" || "$(cat "$(marker_of "$dir")" 2>/dev/null)" != "$(localstack_session)" ]]; then
    rm -f "$state" "$state.backup"
    say "nothing deployed to this LocalStack"
    return
  fi
  init_quiet "$dir"
  start="$(now)"
  tf -chdir="$dir" destroy -input=false -auto-approve -no-color -var "localstack_endpoint=$ENDPOINT" "$@"
  say "destroyed envs/$env (workspace $WORKSPACE) in $(since "$start") s"
}

cmd_output() {
  local env="${1:-local}"
  use_workspace
  tf -chdir="$INFRA/envs/$env" output -json
}

cmd="${1:-}"
shift || true
case "$cmd" in
  fmt-check) cmd_fmt_check ;;
  fmt) cmd_fmt ;;
  validate) cmd_validate ;;
  plan-ghost-check) cmd_plan_ghost_check ;;
  check-unit) cmd_check_unit ;;
  test-modules) cmd_test_modules ;;
  zip) cmd_zip "$@" ;;
  deploy) cmd_deploy "$@" ;;
  destroy) cmd_destroy "$@" ;;
  output) cmd_output "$@" ;;
  dummy-zips) dummy_zips "${1:?dummy-zips DIR}" ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
