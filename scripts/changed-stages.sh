#!/usr/bin/env bash
# The Lambda stages a change touches, comma-separated in pipeline order
# (ghost.yml ghosts them). Prints nothing when no stage's code changed.
#
#   scripts/changed-stages.sh BASE [HEAD]   files of git diff BASE...HEAD (HEAD: HEAD)
#   scripts/changed-stages.sh -             file names on stdin, one per line
#
# functions/<stage>/** changes that stage. Whatever every stage binary is
# built from changes all three: shared/** (the shared crate), contracts/**
# (compiled in by shared/build.rs), Cargo.toml and Cargo.lock.
set -euo pipefail
STAGES=(ingest curate profile)
if [[ "${1:-}" == - ]]; then
  files="$(cat)"
elif [[ $# -ge 1 ]]; then
  files="$(git diff --name-only "$1...${2:-HEAD}")"
else
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
declare -A hit=()
while IFS= read -r f; do
  case "$f" in
    shared/* | contracts/* | Cargo.toml | Cargo.lock)
      for s in "${STAGES[@]}"; do hit[$s]=1; done ;;
    functions/*/*)
      s="${f#functions/}"
      hit[${s%%/*}]=1 ;;
  esac
done <<<"$files"
out=()
for s in "${STAGES[@]}"; do [[ -n "${hit[$s]:-}" ]] && out+=("$s"); done
(IFS=,; echo "${out[*]}")
