#!/usr/bin/env bash
# One env's deploy in CD (deploy.yml), with the `live` alias of every stage
# recorded before and after, so a rollback knows where to go back to.
#
#   scripts/deploy.sh ENV ZIP_DIR [OUT_DIR]     ENV: dev or prod
#
# 1. checks ZIP_DIR/SHA256SUMS (written by ci.yml next to the zips) if present;
# 2. terraform init of infra/envs/ENV (backend.hcl; written from $TF_BACKEND if set);
# 3. OUT_DIR/live-before.json = scripts/alias.sh snapshot ENV, also `previous=`
#    in $GITHUB_OUTPUT;
# 4. make deploy ENV=ENV ZIP_DIR=ZIP_DIR CODE_VERSION=$CODE_VERSION TF_ARGS=-auto-approve;
# 5. OUT_DIR/live-after.json, and a before/after table in $GITHUB_STEP_SUMMARY.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV="${1:?usage: deploy.sh ENV ZIP_DIR [OUT_DIR]}"
ZIPS="$(cd "${2:?usage: deploy.sh ENV ZIP_DIR [OUT_DIR]}" && pwd)"
OUT="${3:-dist/deploy-$ENV}"
mkdir -p "$OUT"
[[ "$ENV" == dev || "$ENV" == prod ]] || { echo "deploy: ENV must be dev or prod (make deploy-local for LocalStack)" >&2; exit 2; }

if [[ -f "$ZIPS/SHA256SUMS" ]]; then
  (cd "$ZIPS" && sha256sum -c SHA256SUMS)
fi
if [[ -n "${TF_BACKEND:-}" ]]; then
  printf '%s\n' "$TF_BACKEND" >"infra/envs/$ENV/backend.hcl"
fi
terraform -chdir="infra/envs/$ENV" init -input=false -backend-config=backend.hcl

bash scripts/alias.sh snapshot "$ENV" >"$OUT/live-before.json"
echo "deploy: live before: $(cat "$OUT/live-before.json")"
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  echo "previous=$(cat "$OUT/live-before.json")" >>"$GITHUB_OUTPUT"
fi

make deploy ENV="$ENV" ZIP_DIR="$ZIPS" CODE_VERSION="${CODE_VERSION:-$(git rev-parse HEAD)}" TF_ARGS=-auto-approve

bash scripts/alias.sh snapshot "$ENV" >"$OUT/live-after.json"
echo "deploy: live after: $(cat "$OUT/live-after.json")"
if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
  python3 - "$ENV" "$OUT/live-before.json" "$OUT/live-after.json" >>"$GITHUB_STEP_SUMMARY" <<'PY'
import json, sys
env, before, after = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
print(f"### {env}: `live` aliases\n\n| stage | before | after |\n|---|---|---|")
for s in after:
    print(f"| {s} | {before.get(s) or 'none'} | {after[s] or 'none'} |")
print(f"\nRoll back: run this workflow with action=rollback, env={env} "
      f"(or `bash scripts/alias.sh restore {env} live-before.json` from the artifact).")
PY
fi
