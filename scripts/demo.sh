#!/usr/bin/env bash
# `make demo`: generate sample trips data (with bad rows, a gzip file, a JSONL
# file and one corrupt file), run the whole pipeline locally, run it again to
# show that nothing is done twice, and show where everything went.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DEMO_DIR:-demo-data}
# A newcomer's `make demo` builds the CLI alone and without the AWS SDK (the
# `aws` feature; the local pipeline needs none of it): the quickest first
# run. Inside `make test` (DEMO_DEV_BUILD=1) it uses the build every test
# step shares.
# The `demo` profile (Cargo.toml) leaves everything unoptimised: about 2
# minutes to build on 2 cores instead of 6, and the run takes seconds.
if [ -n "${DEMO_DEV_BUILD:-}" ]; then
  bash scripts/build-dev.sh
  BIN=target/debug/sluice
else
  echo "== building the sluice CLI (local pipeline only, without the AWS SDK)"
  cargo build -q -p sluice-cli --no-default-features --profile demo
  BIN=target/demo/sluice
fi
rm -rf "$DIR"
RAW="$DIR/landing/raw/trips"
mkdir -p "$RAW"
echo "== generating sample data in $RAW"
"$BIN" generate trips --rows 40000 --seed 1 --bad-ratio 0.03 --duplicate-ratio 0.01 --start 2024-01-01 --days 7 --out "$RAW/yellow_tripdata_2024-01.csv"
"$BIN" generate trips --rows 30000 --seed 2 --bad-ratio 0.02 --start 2024-01-08 --days 7 --out "$RAW/yellow_tripdata_2024-01b.csv.gz"
"$BIN" generate trips --rows 20000 --seed 3 --bad-ratio 0.02 --start 2024-01-15 --days 7 --out "$RAW/yellow_tripdata_2024-01c.jsonl"
# A vendor's bad batch: a quarter of the rows are broken, which the profile
# stage reports as a quarantine-ratio breach.
"$BIN" generate trips --rows 2000 --seed 4 --bad-ratio 0.25 --start 2024-01-22 --days 1 --out "$RAW/vendor_batch_2024-01-22.csv"
printf 'this file claims to be gzip but is not\n' > "$RAW/corrupt_2024-01.csv.gz"
echo
echo "== first run"
"$BIN" run --local "$DIR"
echo
echo "== second run (idempotent: nothing is processed twice)"
"$BIN" run --local "$DIR"
echo
echo "== the corrupt file is in the dead-letter queue:"
python3 -c "
import json,sys
for l in open('$DIR/dlq/ingest.jsonl'):
    e=json.loads(l); print(' ', e['error']['kind'], '-', e['error']['message'])
"
echo "== a few quarantined rows (line, reasons):"
python3 -c "
import glob,json
n=0
for f in sorted(glob.glob('$DIR/validated/_quarantine/ingest/trips/*.jsonl')):
    for l in open(f):
        e=json.loads(l); print('  line', e['line'], '-', '; '.join(e['reasons']))
        n+=1
        if n>=5: raise SystemExit
"
echo "== alerts raised by the profile stage:"
if [ -s "$DIR/alerts/alerts.jsonl" ]; then head -n 3 "$DIR/alerts/alerts.jsonl" | cut -c1-200; else echo "  none"; fi
