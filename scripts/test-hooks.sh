#!/usr/bin/env bash
# `make hooks-check`: the git hooks' secret scan, for real, in a throwaway
# repository with .githooks installed by scripts/install-hooks.sh:
#   - a staged file holding a (freshly generated, fake) AWS key pair:
#     git commit fails and the message names the file;
#   - a clean staged change: git commit succeeds;
#   - the same key committed with --no-verify: git push fails naming the file,
#     and the remote gets nothing;
#   - without that commit: git push succeeds;
#   - the key in a new commit on a branch the remote has: git push fails.
# Exits 1 if any of these does not hold (a scanner that misses the key fails it).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY
export SLUICE_TOOLS_VENV="${SLUICE_TOOLS_VENV:-$REPO/.venv/tools}"
# No Cargo workspace in the throwaway repository; fmt only runs on staged *.rs.
export SLUICE_HOOKS_SKIP=clippy,test
start=$(date +%s.%N)
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok() { echo "hooks-check: ok: $*"; passed=$((passed + 1)); }
bad() { echo "hooks-check: FAILED: $*" >&2; failed=$((failed + 1)); }

git init -q -b main "$T/repo"
cd "$T/repo"
git config user.email hooks-check@example.invalid
git config user.name hooks-check
git config commit.gpgsign false
mkdir -p scripts
cp -R "$REPO/.githooks" .
cp "$REPO/.secrets.baseline" .
cp "$REPO"/scripts/{tools.sh,secret-scan.sh,install-hooks.sh} scripts/
bash scripts/install-hooks.sh >/dev/null
[[ "$(git config core.hooksPath)" == .githooks ]] || bad "install-hooks.sh did not set core.hooksPath"
git add -A
git commit -q -m "hooks and scanner" >"$T/log" 2>&1 || { cat "$T/log" >&2; echo "hooks-check: FAILED: the initial commit was refused" >&2; exit 1; }

# A fake key pair, made here so that no secret-looking literal is in the repo.
read -r key_id secret < <(python3 -c '
import secrets, string
print("AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16)),
      "".join(secrets.choice(string.ascii_letters + string.digits + "/+") for _ in range(40)))')
leak="config/prod settings.env"
plant() {
  mkdir -p config
  printf 'region = "eu-west-1"\naws_access_key_id = "%s"\naws_secret_access_key = "%s"\n' "$key_id" "$secret" >"$leak"
}
plant

# 1. pre-commit refuses the staged key and names the file.
head_before="$(git rev-parse HEAD)"
git add "$leak"
if git commit -q -m "leak" >"$T/log" 2>&1; then
  bad "pre-commit let a staged AWS secret access key through"
elif ! grep -qF "$leak" "$T/log" || ! grep -q "AWS Access Key" "$T/log"; then
  cat "$T/log" >&2
  bad "pre-commit failed, but its message does not name '$leak' and 'AWS Access Key'"
elif [[ "$(git rev-parse HEAD)" != "$head_before" ]]; then
  bad "pre-commit failed but the commit was made"
else
  ok "pre-commit refused the staged key: $(grep -F "Location:" "$T/log" | head -n 1 | tr -s ' ')"
fi
git reset -q "$head_before"  # unstage it (and undo the commit, had one been made)

# 2. pre-commit lets a clean change through.
printf '# Notes\n\nThe curate stage joins the zone reference table; region us-east-1.\n' >notes.md
git add notes.md
if git commit -q -m "notes" >"$T/log" 2>&1; then
  ok "pre-commit accepted a clean staged change"
else
  cat "$T/log" >&2
  bad "pre-commit refused a clean staged change"
fi

# 3. pre-push refuses a commit that carries the key (made with --no-verify).
git init -q --bare "$T/remote.git"
git remote add origin "$T/remote.git"
git add "$leak"
git commit -q --no-verify -m "leak, hooks skipped"
if git push -q origin main >"$T/log" 2>&1; then
  bad "pre-push let a commit with an AWS secret access key through"
elif ! grep -qF "$leak" "$T/log"; then
  cat "$T/log" >&2
  bad "pre-push failed, but its message does not name '$leak'"
elif git -C "$T/remote.git" rev-parse -q --verify refs/heads/main >/dev/null; then
  bad "pre-push failed but the remote got the branch"
else
  ok "pre-push refused the pushed commit: $(grep -F "secrets found" "$T/log" | head -n 1)"
fi

# 4. pre-push lets clean commits through.
git reset -q --hard HEAD~1
if git push -q origin main >"$T/log" 2>&1 &&
  [[ "$(git -C "$T/remote.git" rev-parse refs/heads/main)" == "$(git rev-parse HEAD)" ]]; then
  ok "pre-push accepted clean commits"
else
  cat "$T/log" >&2
  bad "pre-push refused clean commits"
fi

# 5. pre-push on a branch the remote has: the new commits are scanned too.
remote_before="$(git -C "$T/remote.git" rev-parse -q --verify refs/heads/main || true)"
plant
git add "$leak"
git commit -q --no-verify -m "leak again, hooks skipped"
if git push -q origin main >"$T/log" 2>&1; then
  bad "pre-push let a new commit with an AWS secret access key through on an existing branch"
elif ! grep -qF "$leak" "$T/log" || [[ "$(git -C "$T/remote.git" rev-parse -q --verify refs/heads/main || true)" != "$remote_before" ]]; then
  cat "$T/log" >&2
  bad "pre-push on an existing branch: no message naming '$leak', or the remote moved"
else
  ok "pre-push refused the new commit on an existing branch"
fi

echo "hooks-check: $passed passed, $failed failed ($(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
[[ $failed -eq 0 ]]
