#!/usr/bin/env bash
# ghost.yml's diff: `sluice ghost diff --stage S --markdown` for each ghosted
# stage, into one Markdown report for the pull request.
#
#   scripts/ghost-diff.sh STAGES OUT.md PROD_OUTPUTS GHOST_OUTPUTS
#
# STAGES: comma-separated. PROD_OUTPUTS, GHOST_OUTPUTS: `terraform output
# -json` of infra/envs/prod and of the ghost's workspace of infra/envs/ghost.
# The command reads one file shaped like infra/envs/local's outputs (prod's
# `buckets` and `stages` plus a `ghost` with `bucket` and `stages`), so the two
# are merged into OUT.md.outputs.json first. SLUICE_BIN: the sluice binary
# (default target/debug/sluice). Exits 1 when a stage differs beyond the
# threshold or its diff failed (the report says which); 0 otherwise.
set -euo pipefail
[[ $# -eq 4 ]] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
abs() { [[ "$1" == /* ]] && echo "$1" || echo "$PWD/$1"; }
STAGES="$1" MD="$(abs "$2")" PROD="$(abs "$3")" GHOST="$(abs "$4")"
cd "$(dirname "$0")/.."
SLUICE="${SLUICE_BIN:-target/debug/sluice}"
merged="$MD.outputs.json"
python3 - "$PROD" "$GHOST" >"$merged" <<'PY'
import json, sys
prod, ghost = (json.load(open(p)) for p in sys.argv[1:3])
val = lambda o, k: (o.get(k) or {}).get("value")
if not val(prod, "stages") or not val(ghost, "stages"):
    sys.exit("ghost-diff: the prod outputs need `stages` and the ghost outputs `stages` (deployed?)")
prod["ghost"] = {"value": {"bucket": val(ghost, "bucket"), "stages": val(ghost, "stages")}}
json.dump(prod, sys.stdout, indent=1)
PY
# The file option: --outputs, or --deployment in the versions that call it so.
flag=--outputs
"$SLUICE" ghost diff --help 2>/dev/null | grep -q -- '--outputs' || flag=--deployment
over=0
for stage in ${STAGES//,/ }; do
  rc=0
  "$SLUICE" ghost diff "$flag" "$merged" --stage "$stage" --markdown >>"$MD" || rc=$?
  if [[ $rc -ne 0 ]]; then
    over=1
    printf '\n**%s: %s (sluice ghost diff exit %d; see the run log).**\n' "$stage" \
      "$([[ $rc -eq 1 ]] && echo "differs from prod beyond the threshold" || echo "the comparison could not be made")" \
      "$rc" >>"$MD"
  fi
  echo >>"$MD"
  echo "ghost-diff: $stage: exit $rc" >&2
done
exit "$over"
