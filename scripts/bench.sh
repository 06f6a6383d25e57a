#!/usr/bin/env bash
# `make bench`: Sluice against pyarrow, duckdb and polars on the same
# generated trips files, interleaved, one core and two; curate and profile
# against the equivalent duckdb SQL; cold start of each stage binary; zipped
# binary sizes. Prints one report (also written to $BENCH_DATA/bench.md);
# asserts nothing about time (benchmarks measure, tests verify).
#
# Knobs: BENCH_SMALL=1 (100 MB files, 1 repeat), BENCH_REPEATS (default 3),
# BENCH_DATA (default bench-data), SLUICE_BIN (default target/release/sluice,
# built here when unset), BENCH_TIMEOUT (seconds per run, default 1800),
# BENCH_S3=0 (skip the S3 row; else LocalStack is started on
# BENCH_LOCALSTACK_PORT, default 4599, and stopped at the end).
# The peers are installed (pinned) into .venv/bench by scripts/bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SLUICE_BIN:-}" ]; then
  echo "== building release binaries"
  cargo build --release -q -p sluice-cli -p sluice-ingest -p sluice-curate -p sluice-profile
fi
for tool in taskset python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is needed" >&2; exit 1; }
done
if [ "${BENCH_S3:-1}" != 0 ]; then
  export LOCALSTACK_PORT="${BENCH_LOCALSTACK_PORT:-4599}"
  if ! bash tests/localstack/localstack.sh status >/dev/null 2>&1; then
    bash tests/localstack/localstack.sh up
    trap 'bash tests/localstack/localstack.sh down || true' EXIT
  fi
  export BENCH_S3_ENDPOINT="http://127.0.0.1:$LOCALSTACK_PORT"
fi
python3 scripts/bench.py
