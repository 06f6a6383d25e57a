#!/usr/bin/env bash
# The `live` alias of each stage function: what its queue invokes. Terraform
# (modules/stage) publishes a version on every code change and points `live`
# at it; this moves it by hand, for a rollback that takes effect at once.
#
#   scripts/alias.sh get ENV STAGE               the version live points at
#   scripts/alias.sh set ENV STAGE VERSION       point live at a published VERSION
#   scripts/alias.sh snapshot ENV                {"curate":"7",...} for every stage (null: not deployed)
#   scripts/alias.sh rollback ENV [STAGE|all] [VERSION]
#                                                live back to VERSION, or else to the published
#                                                version just before the one it points at
#   scripts/alias.sh restore ENV FILE            every stage back to a snapshot
#
# ENV is an env of infra/envs (local, dev, prod): function names come from its
# Terraform outputs (scripts/infra.sh output ENV; it must be initialised), or
# from the file $ALIAS_OUTPUTS. AWS credentials and region as usual;
# AWS_ENDPOINT_URL points it at LocalStack (ENV=local uses its outputs' endpoint).
# The next `terraform apply` moves live back to the latest published version
# unless stage_settings pins alias_version (see infra/README.md).
# boto3 comes pinned into .venv/tools (scripts/tools.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$HERE/tools.sh" aws
exec "$(bash "$HERE/tools.sh" --bin)/python" "$HERE/alias.py" "$@"
