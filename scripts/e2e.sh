#!/usr/bin/env bash
# `make e2e`: the pipeline end to end in real LocalStack.
#
# 1. Start LocalStack (tests/localstack/localstack.sh: Docker if an engine
#    answers, else host mode with the process executor), unless one is
#    already running on LOCALSTACK_PORT (then it is reused and left running).
# 2. Build the stage binaries (scripts/build-dev.sh: the build `make unit`
#    already made) and zip them as target/lambda/<stage>/bootstrap.zip.
# 3. terraform apply infra/envs/local with a ghost curate beside prod, and
#    at the same time a second deployment of envs/local for the fault-proxy
#    test (Terraform workspace `faults`, resources named sluice-faults-…).
# 4. The executor plugin's tests, then the sluice-e2e tests but the
#    fault-proxy one, one test at a time, against the first deployment (the
#    pipeline, then the sluice commands: replay, trace, status, ghost diff).
# 5. The fault-proxy test (faults::) on the second deployment, in the
#    background: it reroutes every function of its deployment and mostly
#    waits out visibility timeouts. Beside it:
# 6. `sluice report` of the first deployment, checked in headless Chromium;
# 7. Phoenix (scripts/phoenix.sh): destroy, re-apply, replay the landing
#    bucket; every output must come back byte-identical.
# 8. Under make test, the checks that need no LocalStack (E2E_BESIDE: the
#    simulation, the demo build's clippy, the local report, Terraform).
# 9. Wait for the fault-proxy test and print its log; its failure fails the run.
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
# Both deployments at once, before any test starts: while LocalStack creates
# event source mappings, the existing ones can stall for over a minute. The
# second one (Terraform workspace `faults`) is the fault-proxy test's.
SLUICE_TF_WORKSPACE=faults bash scripts/infra.sh deploy local >target/e2e-faults-deploy.log 2>&1 &
faults_deploy=$!
bash scripts/infra.sh deploy local -var 'ghost_stages=["curate"]' >target/e2e-deploy.log 2>&1 &
deploy=$!
# Meanwhile, the e2e test binary, built once and run twice at the same time
# below (two cargo runs would queue on the build directory's lock).
E2E="$(cargo test -q --workspace --features sluice-e2e/localstack --test e2e --no-run --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "e2e" and m.get("executable"):
        print(m["executable"])')"
[[ -x "$E2E" ]] || { echo "e2e: cannot find the e2e test binary (got '$E2E')"; exit 1; }
wait "$deploy" || { cat target/e2e-deploy.log; exit 1; }
tail -n 3 target/e2e-deploy.log
wait "$faults_deploy" || { cat target/e2e-faults-deploy.log; exit 1; }
tail -n 1 target/e2e-faults-deploy.log
bash scripts/infra.sh output local >target/e2e-outputs.json
SLUICE_TF_WORKSPACE=faults bash scripts/infra.sh output local >target/e2e-faults-outputs.json
FAULTS_TEST=faults::thirty_files_through_a_fault_proxy_on_every_aws_call_converge_exactly_once
t2=$(date +%s)
# The other tests first, alone: with the fault-proxy run beside them, a
# message the ingest function had processed stayed in flight in LocalStack's
# queue for over 90 s (twice in three runs), failing the duplicate-delivery test.
(cd tests/e2e && SLUICE_E2E_OUTPUTS="$OLDPWD/target/e2e-outputs.json" SLUICE_BIN="$OLDPWD/target/debug/sluice" \
  "$E2E" --skip "$FAULTS_TEST" --test-threads=1 --nocapture) || {
  # What the functions and LocalStack's event source mappings said meanwhile.
  .venv/localstack/bin/python scripts/e2e-diagnose.py target/e2e-outputs.json $((($(date +%s) - t2) / 60 + 1)) || true
  exit 1
}
t3=$(date +%s)
set -m # its own process group, so that a failure here stops all of it
(
  cd tests/e2e
  SLUICE_E2E_OUTPUTS="$OLDPWD/target/e2e-faults-outputs.json" SLUICE_BIN="$OLDPWD/target/debug/sluice" \
    "$E2E" --exact "$FAULTS_TEST" --nocapture
  echo "e2e: the fault-proxy run took $(($(date +%s) - t3)) s"
) >target/e2e-faults.log 2>&1 &
faults=$!
set +m
# The report and phoenix go on beside it once it has rerouted its functions
# (new versions, `live` moved): phoenix's re-apply creates event source
# mappings, which can stall the existing ones for a while.
for _ in $(seq 120); do
  grep -q '^faults: seed' target/e2e-faults.log && break
  kill -0 "$faults" 2>/dev/null || break
  sleep 1
done
target/debug/sluice report --deployment target/e2e-outputs.json --out target/e2e-report.html
bash scripts/report-check.sh target/e2e-report.html target/e2e-report.png
t4=$(date +%s)
bash scripts/phoenix.sh
t5=$(date +%s)
# E2E_BESIDE (make test sets it): a command of checks that need no
# LocalStack, run here while the fault-proxy test, which mostly waits out
# visibility timeouts, goes on; niced, so that LocalStack's functions come
# first. Its failure fails the run.
beside=""
if [[ -n "${E2E_BESIDE:-}" ]]; then
  echo "e2e: beside the fault-proxy run: $E2E_BESIDE"
  nice -n 10 bash -c "$E2E_BESIDE" || { echo "e2e: '$E2E_BESIDE' failed (beside the fault-proxy run)"; exit 1; }
  beside=", then beside it: checks $(($(date +%s) - t5)) s"
fi
t5b=$(date +%s)
ok=0
wait "$faults" || ok=$?
faults=""
echo "e2e: the fault-proxy test on its own deployment (log: target/e2e-faults.log):"
cat target/e2e-faults.log
[[ $ok -eq 0 ]] || { echo "e2e: the fault-proxy test failed (exit $ok)"; exit 1; }
t6=$(date +%s)
echo "e2e: passed; LocalStack up $((t1 - t0)) s, build+deploy $((t2 - t1)) s, tests $((t3 - t2)) s, then beside the fault-proxy run: report $((t4 - t3)) s, phoenix $((t5 - t4)) s$beside, then waited $((t6 - t5b)) s for it; total $((t6 - t0)) s"
