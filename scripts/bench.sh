#!/usr/bin/env bash
# `make bench`: ingest throughput, peak RSS and output size on generated trips
# data; cold start of each stage binary; zipped binary sizes. Prints figures;
# asserts nothing about time (benchmarks measure, tests verify).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BENCH_DATA:-bench-data}
mkdir -p "$DATA"
echo "== building release binaries"
cargo build --release -q -p sluice-cli -p sluice-ingest -p sluice-curate -p sluice-profile
BIN=target/release/sluice
gen() { # rows out [extra args]
  if [ ! -s "$2" ]; then "$BIN" generate trips --rows "$1" --seed 7 --bad-ratio 0.01 --out "$2" "${@:3}"; fi
}
echo "== generating data (cached in $DATA; ~109 bytes per CSV row)"
gen 920000 "$DATA/trips-100mb.csv"
gen 920000 "$DATA/trips-100mb.csv.gz"
gen 920000 "$DATA/trips-100mb.jsonl"
if [ "${BENCH_SMALL:-0}" != 1 ]; then gen 9200000 "$DATA/trips-1gb.csv"; fi
echo "== ingest (one core for parsing; local store)"
for f in "$DATA"/trips-100mb.csv "$DATA"/trips-100mb.csv.gz "$DATA"/trips-100mb.jsonl "$DATA"/trips-1gb.csv; do
  [ -f "$f" ] && "$BIN" bench-ingest "$f" --scratch "$DATA/scratch"
done
echo "== cold start (process start -> first Runtime API request)"
python3 scripts/coldstart.py ingest=target/release/sluice-ingest curate=target/release/sluice-curate profile=target/release/sluice-profile
echo "== zipped bootstrap sizes"
python3 - <<'PY'
import io, os, zipfile
for s in ("ingest", "curate", "profile"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(f"target/release/sluice-{s}", "bootstrap")
    print(f"zip {s:<8} {len(buf.getvalue())/1e6:5.1f} MB  (binary {os.path.getsize(f'target/release/sluice-{s}')/1e6:.1f} MB)")
PY
