#!/usr/bin/env bash
# The one dev build that every test step shares. `cargo test --workspace
# --no-run` compiles each crate once, with the workspace's feature set
# (dev-dependencies included), and also leaves the real binaries in
# target/debug (sluice, sluice-ingest, sluice-curate, sluice-profile). A
# `cargo build -p …` or `cargo test -p …` resolves features for fewer packages
# and would compile most of the tree a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -q --workspace --no-run
