#!/usr/bin/env bash
# `make hooks`: use the versioned hooks in .githooks/ for this clone.
#
# It sets core.hooksPath (rather than copying into .git/hooks), so a change to
# the hooks arrives with the next pull, with nothing to reinstall. Hooks that
# were in .git/hooks stop running. Undo: git config --unset core.hooksPath.
# It also installs the pinned secret scanner (detect-secrets) into .venv/tools,
# so the first commit does not wait for it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOP="$(git -C "$HERE/.." rev-parse --show-toplevel)"
start=$(date +%s.%N)
bash "$HERE/tools.sh" scanner
chmod +x "$TOP"/.githooks/*
for h in "$TOP"/.git/hooks/*; do
  [[ -f "$h" && "$h" != *.sample ]] && echo "hooks: note: $h no longer runs (core.hooksPath wins)" >&2
done
git -C "$TOP" config core.hooksPath .githooks
echo "hooks: core.hooksPath=$(git -C "$TOP" config core.hooksPath): pre-commit (cargo fmt --check, secret scan of the staged changes)," \
  "pre-push (secret scan of the pushed commits, clippy -D warnings, cargo test --workspace);" \
  "ready in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
