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
# Meanwhile, from step 3 on: the fault-proxy test (faults::), which reroutes
# every function of the deployment it runs on, on a second deployment of
# envs/local in the same LocalStack (Terraform workspace `faults`, resources
# named sluice-faults-…). It mostly waits out visibility timeouts, so it
# runs beside steps 4-6 rather than after them; its log is printed at the end.
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
  started=1
fi
faults=""
cleanup() {
  if [[ -n "$faults" ]]; then kill -- "-$faults" 2>/dev/null || true; fi
  if [[ -n "${started:-}" ]]; then bash "$LS" down || true; fi
}
trap cleanup EXIT
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
# The e2e test binary, built once and run twice at the same time (two cargo
# runs would queue on the build directory's lock).
E2E="$(cargo test -q --workspace --features sluice-e2e/localstack --test e2e --no-run --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "e2e" and m.get("executable"):
        print(m["executable"])')"
[[ -x "$E2E" ]] || { echo "e2e: cannot find the e2e test binary (got '$E2E')"; exit 1; }
FAULTS_TEST=faults::thirty_files_through_a_fault_proxy_on_every_aws_call_converge_exactly_once
# The second deployment, before any test runs: while LocalStack creates
# event source mappings, the existing ones can stall for over a minute.
SLUICE_TF_WORKSPACE=faults bash scripts/infra.sh deploy local >target/e2e-faults-deploy.log 2>&1 ||
  { cat target/e2e-faults-deploy.log; exit 1; }
tail -n 1 target/e2e-faults-deploy.log
SLUICE_TF_WORKSPACE=faults bash scripts/infra.sh output local >target/e2e-faults-outputs.json
t2=$(date +%s)
set -m # its own process group, so that a failure here stops all of it
(
  cd tests/e2e
  SLUICE_E2E_OUTPUTS="$OLDPWD/target/e2e-faults-outputs.json" SLUICE_BIN="$OLDPWD/target/debug/sluice" \
    "$E2E" --exact "$FAULTS_TEST" --nocapture
  echo "e2e: the fault-proxy run took $(($(date +%s) - t2)) s"
) >target/e2e-faults.log 2>&1 &
faults=$!
set +m
# The other tests start once the fault-proxy test has rerouted its functions
# (new versions, `live` moved), for the same reason.
for _ in $(seq 120); do
  grep -q '^faults: seed' target/e2e-faults.log && break
  kill -0 "$faults" 2>/dev/null || break
  sleep 1
done
(cd tests/e2e && SLUICE_E2E_OUTPUTS="$OLDPWD/target/e2e-outputs.json" SLUICE_BIN="$OLDPWD/target/debug/sluice" \
  "$E2E" --skip "$FAULTS_TEST" --test-threads=1 --nocapture)
t3=$(date +%s)
target/debug/sluice report --deployment target/e2e-outputs.json --out target/e2e-report.html
bash scripts/report-check.sh target/e2e-report.html target/e2e-report.png
t4=$(date +%s)
bash scripts/phoenix.sh
t5=$(date +%s)
ok=0
wait "$faults" || ok=$?
faults=""
echo "e2e: the fault-proxy test on its own deployment (log: target/e2e-faults.log):"
cat target/e2e-faults.log
[[ $ok -eq 0 ]] || { echo "e2e: the fault-proxy test failed (exit $ok)"; exit 1; }
t6=$(date +%s)
echo "e2e: passed; LocalStack up $((t1 - t0)) s, build+deploy $((t2 - t1)) s, tests $((t3 - t2)) s, report $((t4 - t3)) s, phoenix $((t5 - t4)) s, then waited $((t6 - t5)) s for the fault-proxy run; total $((t6 - t0)) s"
