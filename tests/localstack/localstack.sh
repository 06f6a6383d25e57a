#!/usr/bin/env bash
# Start and stop the LocalStack that Sluice's end-to-end tests talk to.
#
#   tests/localstack/localstack.sh install  the virtualenv alone (make test starts it early, in the background)
#   tests/localstack/localstack.sh up       install if needed, start, wait for Ready.
#   tests/localstack/localstack.sh down     stop it and every process it started
#   tests/localstack/localstack.sh status   exit 0 if running and healthy
#   tests/localstack/localstack.sh logs [-f]
#
# LOCALSTACK_PORT (default 4566) picks the port on 127.0.0.1.
#
# With a reachable Docker engine it runs the localstack/localstack image.
# Without one (CI and the dev machines) it runs LocalStack on the host from a
# project virtualenv ($REPO/.venv/localstack), and Lambda functions run as local
# processes through the `process` executor in ./executor. State, logs and the
# unpacked function code live in $REPO/.localstack/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$REPO/.venv/localstack"
STATE="$REPO/.localstack"
PORT="${LOCALSTACK_PORT:-4566}"
IMAGE="localstack/localstack:4.9.2"
CONTAINER="sluice-localstack-$PORT"
PIDFILE="$STATE/pid"
CONTAINERFILE="$STATE/container"
LOGFILE="$STATE/localstack.log"
SERVICES="s3,sqs,sns,lambda,iam,sts,logs,events,cloudwatch"
READY_TIMEOUT=120
INSTALLED=""  # set when ensure_venv (re)installed something
# LocalStack normally exits 2-6 s after SIGTERM, stopping every function's
# processes on the way. When a function was deleted just before, LocalStack
# 4.9 can leave a non-daemon keepalive timer behind and hang in interpreter
# exit for up to 10 minutes, with nothing left to save: it gets SIGKILL after
# STOP_TIMEOUT.
STOP_TIMEOUT=10

say() { echo "localstack: $*"; }
die() { echo "localstack: $*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME:-$(date +%s.%N)}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:$PORT/_localstack/health" >/dev/null 2>&1
}

# --- the virtualenv ----------------------------------------------------------

# Hash of everything that decides what gets installed.
install_hash() {
  (
    cd "$HERE"
    cat requirements.txt
    find executor -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' \
      ! -path 'executor/build/*' | LC_ALL=C sort | while read -r f; do
      echo "== $f"
      cat "$f"
    done
    python3 --version
  ) | sha256sum | cut -d' ' -f1
}

# One installer at a time: `up` waits here for make test's early `install`.
# The lock is let go before LocalStack starts, which would inherit it.
ensure_venv() {
  mkdir -p "$(dirname "$VENV")"
  exec 9>"$VENV.lock"
  if ! flock -n 9; then
    say "waiting for another install of $VENV to finish"
    flock 9
  fi
  install_venv
  exec 9>&-
}

install_venv() {
  local stamp="$VENV/.sluice-install-stamp" want start tmp
  want="$(install_hash)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
    return
  fi
  start="$(now)"
  if ! "$VENV/bin/python" -c '' 2>/dev/null; then
    say "creating virtualenv $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
  fi
  say "installing tests/localstack/requirements.txt and the process executor"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
  # Build from a copy so setuptools leaves no build/ or *.egg-info in the tree.
  tmp="$(mktemp -d)"
  cp -R "$HERE/executor" "$tmp/"
  if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-deps --force-reinstall "$tmp/executor"; then
    rm -rf "$tmp"
    die "installing the executor package failed"
  fi
  rm -rf "$tmp"
  echo "$want" >"$stamp"
  INSTALLED=1
  say "virtualenv ready in $(since "$start") s"
}

# --- host mode -----------------------------------------------------------------

# The pid of our LocalStack, if the pid file names a live one (not a reused pid).
host_pid() {
  local pid cmdline
  [[ -f "$PIDFILE" ]] || return 1
  pid="$(cat "$PIDFILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
  [[ "$cmdline" == *localstack.runtime.main* ]] || return 1
  echo "$pid"
}

wait_ready() {  # $1: pid (host) or empty (docker); $2: start time
  local pid="$1" start="$2" deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if [[ -n "$pid" ]]; then
      grep -qx 'Ready\.' "$LOGFILE" 2>/dev/null && healthy && break
      if grep -q 'CannotListenError' "$LOGFILE" 2>/dev/null; then
        show_failure "LocalStack could not listen on port $PORT"
        return 1
      fi
      kill -0 "$pid" 2>/dev/null || { show_failure "LocalStack exited during startup"; return 1; }
    else
      docker logs "$CONTAINER" 2>&1 | grep -qx 'Ready\.' && healthy && break
    fi
    sleep 0.2
  done
  if ((SECONDS >= deadline)); then
    show_failure "LocalStack was not ready after ${READY_TIMEOUT} s"
    return 1
  fi
  say "ready on http://127.0.0.1:$PORT in $(since "$start") s"
}

show_failure() {
  echo "localstack: $1; last log lines:" >&2
  if [[ -f "$CONTAINERFILE" ]]; then
    docker logs --tail 40 "$CONTAINER" >&2 || true
  else
    tail -n 40 "$LOGFILE" >&2 || true
  fi
}

up_host() {
  local pid start
  ensure_venv
  if pid="$(host_pid)"; then
    if healthy; then
      say "already running (pid $pid, port $PORT)"
      if [[ -n "${INSTALLED:-}" ]]; then
        say "note: it still runs the code from before this install; run down, then up"
      fi
      return
    fi
    say "pid $pid is running but not healthy yet; waiting"
    wait_ready "$pid" "$(now)" || exit 1
    return
  fi
  if port_open; then
    die "port $PORT is already in use (not by a LocalStack started here); stop that or set LOCALSTACK_PORT"
  fi

  sweep  # anything left over from a LocalStack that died without `down`
  rm -rf "$STATE/tmp"  # stale unpacked function code
  mkdir -p "$STATE/tmp" "$STATE/fs" "$STATE/volume"
  say "mode: host (process executor); log: $LOGFILE"
  start="$(now)"
  # setsid: LocalStack leads its own session and process group, so `down` can
  # signal everything it started in one go.
  env \
    GATEWAY_LISTEN="127.0.0.1:$PORT" \
    SERVICES="$SERVICES" \
    DNS_ADDRESS=0 \
    DISABLE_EVENTS=1 \
    OVERRIDE_IN_DOCKER=0 \
    FILESYSTEM_ROOT="$STATE/fs" \
    LOCALSTACK_VOLUME_DIR="$STATE/volume" \
    TMPDIR="$STATE/tmp" \
    LAMBDA_RUNTIME_EXECUTOR=process \
    LAMBDA_RETRY_BASE_DELAY=1 \
    `# URLs it hands out (queue URLs, S3 Location) point at 127.0.0.1:$PORT;` \
    `# queue URLs are http://127.0.0.1:$PORT/<account>/<name> (strategy "off"):` \
    `# the Terraform AWS provider rejects the /queue/<region>/... form of "path"` \
    LOCALSTACK_HOST="127.0.0.1:$PORT" \
    SQS_ENDPOINT_STRATEGY=off \
    setsid "$VENV/bin/python" -m localstack.runtime.main </dev/null >"$LOGFILE" 2>&1 &
  pid=$!
  echo "$pid" >"$PIDFILE"
  wait_ready "$pid" "$start" || { down_host >/dev/null 2>&1 || true; exit 1; }
}

# Kill whatever is left of our LocalStack: its session, and the init and
# bootstrap processes (they lead sessions of their own), recognised by working
# in our unpacked function code with a Lambda function's environment.
sweep() {
  local sid="${1:-}" pids p cwd
  pids=""
  if [[ -n "$sid" ]]; then
    pids="$(ps -eo pid=,sid= | awk -v s="$sid" '$2 == s { print $1 }')"
  fi
  for p in /proc/[0-9]*; do
    cwd="$(readlink "$p/cwd" 2>/dev/null)" || continue
    if [[ "$cwd" == "$STATE/tmp/lambda/"* ]] &&
      grep -qa 'AWS_LAMBDA_FUNCTION_NAME=' "$p/environ" 2>/dev/null; then
      pids+=" ${p#/proc/}"
    fi
  done
  for p in $pids; do
    if [[ "$p" != "$$" ]] && kill -KILL "$p" 2>/dev/null; then
      say "killed leftover process $p"
    fi
  done
}

down_host() {
  local pid deadline
  if ! pid="$(host_pid)"; then
    rm -f "$PIDFILE"
    sweep
    say "not running"
    return
  fi
  say "stopping pid $pid"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "still running after ${STOP_TIMEOUT} s (a known LocalStack shutdown hang); sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
  fi
  sleep 0.5  # let the inits notice LocalStack is gone and stop their bootstraps
  sweep "$pid"
  rm -f "$PIDFILE"
  say "stopped"
}

# --- docker mode -----------------------------------------------------------------

docker_running() {
  [[ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" == "true" ]]
}

up_docker() {
  local start
  ensure_venv  # the tests still need boto3
  if docker_running && healthy; then
    say "already running (container $CONTAINER, port $PORT)"
    return
  fi
  docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
  mkdir -p "$STATE"
  say "mode: docker ($IMAGE)"
  start="$(now)"
  docker run -d --rm --name "$CONTAINER" \
    -p "127.0.0.1:$PORT:4566" \
    -e SERVICES="$SERVICES" \
    -e DISABLE_EVENTS=1 \
    -e LAMBDA_RETRY_BASE_DELAY=1 \
    -v /var/run/docker.sock:/var/run/docker.sock \
    "$IMAGE" >/dev/null
  echo "$CONTAINER" >"$CONTAINERFILE"
  wait_ready "" "$start" || { docker rm -f "$CONTAINER" >/dev/null 2>&1; rm -f "$CONTAINERFILE"; exit 1; }
}

down_docker() {
  docker stop -t "$STOP_TIMEOUT" "$CONTAINER" >/dev/null 2>&1 || true
  docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
  rm -f "$CONTAINERFILE"
  say "stopped container $CONTAINER"
}

# --- commands ----------------------------------------------------------------------

docker_engine() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

cmd="${1:-}"
case "$cmd" in
  up)
    if [[ -f "$CONTAINERFILE" ]] || docker_engine; then up_docker; else up_host; fi
    ;;
  down)
    if [[ -f "$CONTAINERFILE" ]]; then down_docker; else down_host; fi
    ;;
  install)
    ensure_venv
    ;;
  status)
    if [[ -f "$CONTAINERFILE" ]]; then
      docker_running || { say "not running"; exit 1; }
      say "container $CONTAINER on port $PORT"
    else
      pid="$(host_pid)" || { say "not running"; exit 1; }
      say "host mode, pid $pid, port $PORT"
    fi
    healthy || { say "not healthy"; exit 1; }
    curl -fsS --max-time 2 "http://127.0.0.1:$PORT/_localstack/health"
    echo
    ;;
  logs)
    shift
    if [[ -f "$CONTAINERFILE" ]]; then
      docker logs "$@" "$CONTAINER"
    elif [[ "${1:-}" == "-f" ]]; then
      tail -n 100 -f "$LOGFILE"
    else
      tail -n 200 "$LOGFILE"
    fi
    ;;
  *)
    echo "usage: $0 install|up|down|status|logs [-f]" >&2
    exit 2
    ;;
esac
