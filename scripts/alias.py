"""Move the `live` alias of the stage functions (see scripts/alias.sh).

Function names come from Terraform's outputs of the env (`stages.<stage>.function_name`,
or `function_names.<stage>`): from the file $ALIAS_OUTPUTS when set, else from
`scripts/infra.sh output ENV`. boto3 honours AWS_ENDPOINT_URL (LocalStack);
for ENV=local the endpoint and region default to the env's own outputs.
"""

import json
import os
import subprocess
import sys

import boto3
from botocore.exceptions import ClientError

ALIAS = "live"
STAGES = ("ingest", "curate", "profile")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(msg):
    print(f"alias: {msg}", file=sys.stderr)
    sys.exit(1)


def outputs(env):
    path = os.environ.get("ALIAS_OUTPUTS")
    if path:
        with open(path) as f:
            raw = json.load(f)
    else:
        run = subprocess.run(
            ["bash", os.path.join(REPO, "scripts", "infra.sh"), "output", env],
            capture_output=True, text=True, check=False,
        )
        if run.returncode != 0:
            die(f"terraform output of envs/{env} failed (init it first):\n{run.stderr.strip()}")
        raw = json.loads(run.stdout or "{}")
    # `terraform output -json` wraps each value as {"value": ..., "type": ...}.
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in raw.items()}


def functions(out):
    names = {s: v.get("function_name") for s, v in (out.get("stages") or {}).items()}
    names.update({s: n for s, n in (out.get("function_names") or {}).items() if not names.get(s)})
    return {s: names[s] for s in STAGES if names.get(s)}


def client(env, out):
    if env == "local":
        os.environ.setdefault("AWS_ENDPOINT_URL", out.get("endpoint") or "http://127.0.0.1:4566")
        os.environ.setdefault("AWS_REGION", out.get("region") or "us-east-1")
    if os.environ.get("AWS_ENDPOINT_URL") and not os.environ.get("AWS_ACCESS_KEY_ID"):
        # LocalStack takes any credentials.
        os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or out.get("region") or "us-east-1"
    return boto3.client("lambda", region_name=region)


def get(lam, fn):
    """The version `live` points at; None if the function or alias does not exist."""
    try:
        return lam.get_alias(FunctionName=fn, Name=ALIAS)["FunctionVersion"]
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def published(lam, fn):
    versions = []
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=fn):
        versions += [int(v["Version"]) for v in page["Versions"] if v["Version"].isdigit()]
    return sorted(versions)


def move(lam, stage, fn, version):
    before = get(lam, fn)
    if before is None:
        die(f"{stage}: {fn} has no `{ALIAS}` alias")
    try:
        lam.get_function_configuration(FunctionName=fn, Qualifier=str(version))
    except ClientError as e:
        die(f"{stage}: {fn} has no version {version} ({e.response['Error']['Code']})")
    try:
        lam.update_alias(FunctionName=fn, Name=ALIAS, FunctionVersion=str(version))
    except ClientError as e:
        die(f"{stage}: moving {fn}:{ALIAS} to {version} failed: {e}")
    print(f"alias: {stage}: {fn}:{ALIAS} {before} -> {version}", file=sys.stderr)
    return before


def pick(names, stage):
    if stage in (None, "", "all"):
        return names
    if stage not in names:
        die(f"no stage '{stage}' in the outputs (stages: {', '.join(names) or 'none'})")
    return {stage: names[stage]}


def main(argv):
    usage = "usage: alias.sh get ENV STAGE | set ENV STAGE VERSION | snapshot ENV | rollback ENV [STAGE|all] [VERSION] | restore ENV FILE"
    if len(argv) < 2:
        die(usage)
    cmd, env, rest = argv[0], argv[1], argv[2:]
    out = outputs(env)
    names = functions(out)
    if not names and cmd != "snapshot":
        die(f"the outputs of envs/{env} name no stage function (deployed yet?)")
    lam = client(env, out)

    if cmd == "get" and len(rest) == 1:
        (stage,) = rest
        version = get(lam, pick(names, stage)[stage])
        if version is None:
            die(f"{stage}: no `{ALIAS}` alias")
        print(version)
    elif cmd == "set" and len(rest) == 2:
        stage, version = rest
        move(lam, stage, pick(names, stage)[stage], version)
    elif cmd == "snapshot" and not rest:
        print(json.dumps({s: get(lam, fn) for s, fn in names.items()}, sort_keys=True))
    elif cmd == "rollback" and len(rest) <= 2:
        stage = rest[0] if rest else None
        version = rest[1] if len(rest) > 1 and rest[1] else None
        if version and stage in (None, "", "all"):
            die("a VERSION needs one STAGE: versions differ between functions")
        for s, fn in pick(names, stage).items():
            target = version
            if target is None:
                current = get(lam, fn)
                older = [v for v in published(lam, fn) if current and current.isdigit() and v < int(current)]
                if not older:
                    die(f"{s}: {fn}:{ALIAS} is at {current}; there is no published version before it")
                target = older[-1]
            move(lam, s, fn, target)
    elif cmd == "restore" and len(rest) == 1:
        with open(rest[0]) as f:
            snap = json.load(f)
        for s, version in snap.items():
            if version is None:
                print(f"alias: {s}: no version recorded (not deployed then); left as it is", file=sys.stderr)
            elif s in names and get(lam, names[s]) != str(version):
                move(lam, s, names[s], version)
    else:
        die(usage)


if __name__ == "__main__":
    main(sys.argv[1:])
