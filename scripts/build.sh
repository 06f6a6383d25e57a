#!/usr/bin/env bash
# `make build`: the Lambda zips, built once and deployed unchanged everywhere.
#
#   scripts/build.sh          cargo lambda build --release (Lambda's glibc,
#                             via zig) -> dist/lambda/<stage>/bootstrap.zip
#   scripts/build.sh --host   cargo build --release on this machine, zipped the
#                             same way (what host-mode LocalStack runs)
#
# cargo-lambda comes from PyPI into .venv/tools (it bundles zig), so nothing
# needs installing by hand. ARCH=arm64 builds for Graviton where the aarch64
# Rust target is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_LAMBDA_VERSION=1.9.2
STAGES=(ingest curate profile)
OUT=dist/lambda
mkdir -p "$OUT"
if [[ "${1:-}" == "--host" ]]; then
  cargo build --release -q "${STAGES[@]/#/--package=sluice-}"
  python3 scripts/zip-host.py --profile release --out "$OUT"
  exit 0
fi
TOOLS=.venv/tools
if [[ "$("$TOOLS/bin/cargo-lambda" lambda --version 2>/dev/null)" != *"$CARGO_LAMBDA_VERSION"* ]]; then
  echo "build: installing cargo-lambda $CARGO_LAMBDA_VERSION into $TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
export PATH="$PWD/$TOOLS/bin:$PATH"
arch=()
[[ "${ARCH:-x86_64}" == arm64 ]] && arch=(--arm64)
cargo lambda build --release --output-format zip "${arch[@]}" "${STAGES[@]/#/--package=sluice-}"
for s in "${STAGES[@]}"; do
  mkdir -p "$OUT/$s"
  cp "target/lambda/sluice-$s/bootstrap.zip" "$OUT/$s/bootstrap.zip"
  echo "build: $OUT/$s/bootstrap.zip ($(du -h "$OUT/$s/bootstrap.zip" | cut -f1))"
done
