#!/usr/bin/env bash
# Secret scan with Yelp's detect-secrets (pinned in scripts/tools.sh) against
# the committed .secrets.baseline (its known false positives and its settings:
# plugins, excluded files and lines).
#
#   scripts/secret-scan.sh --staged         what `git commit` would record (the index): pre-commit
#   scripts/secret-scan.sh --push REMOTE    pre-push: reads git's pre-push lines on stdin and scans
#                                           every file each pushed commit adds or changes, as of that commit
#   scripts/secret-scan.sh --commits REV..  the same for the commits `git rev-list REV..` names
#   scripts/secret-scan.sh --tree           every tracked file as it is in the work tree (make secret-scan)
#   scripts/secret-scan.sh --update-baseline  rescan the tracked tree into .secrets.baseline, keeping its
#                                           settings and audit marks (after checking a new finding is no secret)
#
# Exits 1 naming each file, line and kind of secret found that the baseline
# does not list. Files are scanned from a copy (git checkout-index / git
# archive), so the scan sees exactly what is committed, and the baseline is
# read from a copy, so a scan never rewrites it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOP="$(git rev-parse --show-toplevel)"
cd "$TOP"
BASELINE="$TOP/.secrets.baseline"

bash "$HERE/tools.sh" scanner
BIN="$(bash "$HERE/tools.sh" --bin)"
say() { echo "secret-scan: $*" >&2; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
base=()
if [[ -f "$BASELINE" ]]; then
  cp "$BASELINE" "$WORK/baseline.json"
  base=(--baseline "$WORK/baseline.json")
fi

# scan DIR LABEL FILE...: run the hook in DIR on FILEs (paths relative to it).
found=0
scan() {
  local dir="$1" label="$2" rc=0
  shift 2
  [[ $# -gt 0 ]] || return 0
  # An empty repository for detect-secrets' "is the baseline unstaged?"
  # probe (git diff --name-only), which fails outside a repository.
  [[ -d "$WORK/git" ]] || git init -q "$WORK/git"
  (cd "$dir" && GIT_DIR="$WORK/git/.git" "$BIN/detect-secrets-hook" "${base[@]}" -- "$@") >"$WORK/out" 2>&1 || rc=$?
  # 3: no new secret, only the baseline's line numbers moved (in the copy).
  if [[ $rc -ne 0 && $rc -ne 3 ]]; then
    say "$label: secrets found (detect-secrets-hook exit $rc):"
    cat "$WORK/out" >&2
    found=1
  fi
  return 0
}

scan_index() {
  local files=()
  mapfile -d '' -t files < <(git diff --cached --name-only --diff-filter=ACMR -z)
  [[ ${#files[@]} -gt 0 ]] || { say "nothing staged"; return; }
  mkdir -p "$WORK/index"
  printf '%s\0' "${files[@]}" | git checkout-index --prefix="$WORK/index/" -z --stdin
  scan "$WORK/index" "staged changes" "${files[@]}"
  [[ $found -eq 1 ]] || say "staged changes: ${#files[@]} file(s) clean"
}

scan_commit() {  # $1: commit
  local c="$1" files=() dir
  if git rev-parse -q --verify "$c^" >/dev/null; then
    mapfile -d '' -t files < <(git diff --name-only --diff-filter=ACMR -z "$c^" "$c")
  else
    mapfile -d '' -t files < <(git ls-tree -r --name-only -z "$c")
  fi
  [[ ${#files[@]} -gt 0 ]] || return 0
  dir="$WORK/$c"
  mkdir -p "$dir"
  git --literal-pathspecs archive --format=tar "$c" -- "${files[@]}" | tar -x -C "$dir"
  scan "$dir" "commit $(git log -1 --format='%h %s' "$c")" "${files[@]}"
}

scan_commits() {  # rev-list arguments
  local commits=() c
  mapfile -t commits < <(git rev-list "$@")
  for c in "${commits[@]}"; do scan_commit "$c"; done
  [[ $found -eq 1 ]] || say "${#commits[@]} commit(s) clean"
}

scan_push() {  # $1: remote name; stdin: <local ref> <local sha> <remote ref> <remote sha>
  local remote="${1:-origin}" lref lsha rref rsha zero
  zero="$(git hash-object --stdin </dev/null | tr '0-9a-f' '0')"
  while read -r lref lsha rref rsha; do
    [[ "$lsha" == "$zero" ]] && continue  # a deletion
    if [[ "$rsha" != "$zero" ]] && git cat-file -e "$rsha^{commit}" 2>/dev/null; then
      scan_commits "$rsha..$lsha"
    else  # a new branch (or one not fetched): what no ref of the remote has
      scan_commits "$lsha" --not --remotes="$remote"
    fi
    : "$lref $rref"
  done
}

scan_tree() {
  local files=() f existing=()
  mapfile -d '' -t files < <(git ls-files -z)
  for f in "${files[@]}"; do [[ -f "$f" ]] && existing+=("$f"); done
  scan "$TOP" "work tree" "${existing[@]}"
  [[ $found -eq 1 ]] || say "work tree: ${#existing[@]} tracked file(s) clean"
}

case "${1:-}" in
  --staged) scan_index ;;
  --push) scan_push "${2:-origin}" ;;
  --commits) shift; scan_commits "$@" ;;
  --tree) scan_tree ;;
  --update-baseline)
    "$BIN/detect-secrets" scan --baseline "$BASELINE"
    say "updated ${BASELINE#"$TOP"/}: review new entries with $BIN/detect-secrets audit .secrets.baseline"
    ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
if [[ $found -eq 1 ]]; then
  say "not a secret? add it to .secrets.baseline (scripts/secret-scan.sh --update-baseline) or end the line with '# pragma: allowlist secret'"
  exit 1
fi
