#!/usr/bin/env python3
"""After a failed LocalStack e2e run: what the stage functions and LocalStack's
event source mappings said in the last minutes.

    e2e-diagnose.py OUTPUTS_JSON [MINUTES]

Prints, per stage function, its log lines (CloudWatch Logs in LocalStack)
but the EMF metric records, and LocalStack's own warnings about event source
mapping polls and failed invocations. Runs with the LocalStack virtualenv's
Python (boto3 comes with LocalStack). Never fails the caller: a diagnosis
that cannot be made says why.
"""

import json
import os
import sys
import time

try:
    import boto3
except ImportError:
    print("e2e-diagnose: boto3 is missing; no function logs")
    sys.exit(0)

MAX_LINES = 200


def main() -> None:
    with open(sys.argv[1]) as f:
        # `terraform output -json`: {name: {"value": ...}}
        outputs = {k: v.get("value") for k, v in json.load(f).items()}
    minutes = float(sys.argv[2]) if len(sys.argv) > 2 else 5
    since = int((time.time() - minutes * 60) * 1000)
    logs = boto3.client(
        "logs",
        endpoint_url=outputs.get("endpoint") or "http://127.0.0.1:4566",
        region_name=outputs.get("region") or "us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",  # LocalStack's dummy credentials # pragma: allowlist secret
    )
    names = outputs.get("function_names") or {}
    for stage, name in names.items():
        group = f"/aws/lambda/{name}"
        events = []
        try:
            pages = logs.get_paginator("filter_log_events").paginate(
                logGroupName=group, startTime=since
            )
            for page in pages:
                events.extend(page["events"])
        except Exception as e:  # a diagnosis must not hide the failure itself
            print(f"e2e-diagnose: {group}: {e}")
            continue
        lines = [
            e["message"].rstrip()
            for e in sorted(events, key=lambda e: e["timestamp"])
            if e["message"].strip()
            and "\"_aws\"" not in e["message"]
            and not e["message"].startswith(("START ", "END "))
        ]
        print(f"e2e-diagnose: {group}: the last {min(len(lines), MAX_LINES)} of {len(lines)} lines in {minutes:g} min")
        for line in lines[-MAX_LINES:]:
            print(f"  {line[:400]}")
    state = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".localstack", "localstack.log")
    if os.path.exists(state):
        wanted = ("sqs_poller", "Unhandled exception while processing", "/error =>", "esm_worker")
        with open(state, errors="replace") as f:
            hits = [l.rstrip() for l in f if any(w in l for w in wanted)]
        print(f"e2e-diagnose: LocalStack's log, event source mappings and failed invocations: the last {min(len(hits), 40)} of {len(hits)}")
        for line in hits[-40:]:
            print(f"  {line[:300]}")


if __name__ == "__main__":
    main()
