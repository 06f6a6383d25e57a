#!/usr/bin/env bash
# `make phoenix-local`: burn the LocalStack environment down and raise it
# again from code and source data alone, and prove nothing else was needed.
#
# 1. Wait until the pipeline is idle, then snapshot every output (SHA-256 of
#    each object a stage wrote, prod and ghost) and archive the landing bucket.
# 2. terraform destroy envs/local (every bucket, queue, function and rule).
# 3. Apply the landing bucket alone and restore the archived files into it:
#    no rule exists yet, so nothing is triggered.
# 4. Apply the rest, then `sluice replay backfill --stage ingest`: the landed
#    files are replayed as events, and every later stage follows by itself.
# 5. Wait until idle, snapshot again: every output must be byte-identical.
#
# Needs a running LocalStack with envs/local deployed (make e2e leaves it so;
# or make localstack-up deploy-local). TF_ARGS (default: the ghost curate that
# make e2e deploys) must match what is deployed.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
TF_ARGS="${TF_ARGS:--var ghost_stages=[\"curate\"]}"
OUT=target/phoenix
PY=.venv/localstack/bin/python
BIN=target/debug/sluice
INFRA="bash scripts/infra.sh"
say() { echo "phoenix: $*"; }
t0=$(date +%s)

[[ -x "$PY" ]] || { say "the LocalStack venv is missing: run make localstack-up first"; exit 1; }
bash scripts/build-dev.sh
rm -rf "$OUT"
mkdir -p "$OUT"
$INFRA output local >"$OUT/outputs-before.json"
"$BIN" status --deployment "$OUT/outputs-before.json" --wait-idle 300 >"$OUT/status-before.txt" || {
  rc=$?
  # 3: something is in a DLQ; that is state, not a failure of this script.
  [[ $rc -eq 3 ]] || { cat "$OUT/status-before.txt"; say "the pipeline did not settle"; exit 1; }
}
"$PY" scripts/phoenix.py snapshot "$OUT/outputs-before.json" "$OUT/before.json" --archive "$OUT/landing"

t1=$(date +%s)
# shellcheck disable=SC2086 # TF_ARGS is a list of arguments
$INFRA destroy local $TF_ARGS >"$OUT/destroy.log" 2>&1 || { cat "$OUT/destroy.log"; exit 1; }
say "destroyed envs/local in $(($(date +%s) - t1)) s"

t2=$(date +%s)
# shellcheck disable=SC2086
$INFRA deploy local $TF_ARGS '-target=module.pipeline.module.bucket["landing"]' >"$OUT/apply-landing.log" 2>&1 ||
  { cat "$OUT/apply-landing.log"; exit 1; }
$INFRA output local >"$OUT/outputs-landing.json" 2>/dev/null || cp "$OUT/outputs-before.json" "$OUT/outputs-landing.json"
"$PY" scripts/phoenix.py restore "$OUT/outputs-before.json" "$OUT/landing"
# shellcheck disable=SC2086
$INFRA deploy local $TF_ARGS >"$OUT/apply.log" 2>&1 || { cat "$OUT/apply.log"; exit 1; }
$INFRA output local >"$OUT/outputs.json"
say "re-applied envs/local in $(($(date +%s) - t2)) s"

t3=$(date +%s)
# Exit 3: some files failed again (a corrupt file is corrupt after a rebuild
# too); the comparison below is the verdict.
"$BIN" replay backfill --stage ingest --deployment "$OUT/outputs.json" --wait 600 >"$OUT/backfill.txt" || {
  rc=$?
  [[ $rc -eq 3 ]] || { cat "$OUT/backfill.txt"; say "the backfill failed"; exit 1; }
}
cat "$OUT/backfill.txt"
"$BIN" status --deployment "$OUT/outputs.json" --wait-idle 600 >"$OUT/status-after.txt" || {
  rc=$?
  [[ $rc -eq 3 ]] || { cat "$OUT/status-after.txt"; say "the pipeline did not settle after the replay"; exit 1; }
}
say "replayed the landing bucket in $(($(date +%s) - t3)) s"
"$PY" scripts/phoenix.py snapshot "$OUT/outputs.json" "$OUT/after.json"
"$PY" scripts/phoenix.py compare "$OUT/before.json" "$OUT/after.json"
cp "$OUT/outputs.json" target/e2e-outputs.json
say "done in $(($(date +%s) - t0)) s"
