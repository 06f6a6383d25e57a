#!/usr/bin/env bash
# `make e2e`: the pipeline end to end in real LocalStack.
#
# 1. Start LocalStack (tests/localstack/localstack.sh: Docker if an engine
#    answers, else host mode with the process executor), unless one is
#    already running on LOCALSTACK_PORT (then it is reused and left running).
# 2. Build the stage binaries (scripts/build-dev.sh: the build `make unit`
#    already made) and zip them as target/lambda/<stage>/bootstrap.zip.
# 3. terraform apply infra/envs/local with a ghost curate beside prod.
# 4. The executor plugin's tests, then the sluice-e2e tests, one test at a
#    time, against that deployment (the pipeline, then the sluice commands:
#    replay, trace, status, ghost diff).
# 5. `sluice report` of the deployment, checked in headless Chromium.
# 6. Phoenix (scripts/phoenix.sh): destroy, re-apply, replay the landing
#    bucket; every output must come back byte-identical.
# A LocalStack that cannot be reached fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
LS=tests/localstack/localstack.sh
t0=$(date +%s)
if bash "$LS" status >/dev/null 2>&1; then
  echo "e2e: reusing the LocalStack on port $LOCALSTACK_PORT"
else
  bash "$LS" up
  trap 'bash "$LS" down || true' EXIT
fi
echo "e2e: $(curl -fsS "http://127.0.0.1:$LOCALSTACK_PORT/_localstack/info")"
# The executor plugin's own tests (timeouts, crashes, retries, logs).
.venv/localstack/bin/python tests/localstack/test_executor.py 2>&1 | tail -n 3
t1=$(date +%s)
bash scripts/build-dev.sh
python3 scripts/zip-host.py --profile debug
bash scripts/infra.sh deploy local -var 'ghost_stages=["curate"]' >target/e2e-deploy.log 2>&1 ||
  { cat target/e2e-deploy.log; exit 1; }
tail -n 3 target/e2e-deploy.log
bash scripts/infra.sh output local >target/e2e-outputs.json
t2=$(date +%s)
SLUICE_E2E_OUTPUTS="$PWD/target/e2e-outputs.json" SLUICE_BIN="$PWD/target/debug/sluice" \
  cargo test -q --workspace --features sluice-e2e/localstack --test e2e \
  -- --test-threads=1 --nocapture
t3=$(date +%s)
target/debug/sluice report --deployment target/e2e-outputs.json --out target/e2e-report.html
bash scripts/report-check.sh target/e2e-report.html target/e2e-report.png
t4=$(date +%s)
bash scripts/phoenix.sh
t5=$(date +%s)
echo "e2e: passed; LocalStack up $((t1 - t0)) s, build+deploy $((t2 - t1)) s, tests $((t3 - t2)) s, report $((t4 - t3)) s, phoenix $((t5 - t4)) s, total $((t5 - t0)) s"
