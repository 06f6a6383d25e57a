#!/usr/bin/env python3
"""Helpers of scripts/phoenix.sh (run with the LocalStack venv's Python, which has boto3).

  phoenix.py snapshot OUTPUTS.json SNAPSHOT.json [--archive DIR]
      SHA-256 of every pipeline output (objects a stage wrote: they carry the
      sluice-stage metadata) in the prod and ghost output buckets, keyed by
      s3://bucket/key; with --archive, also download the landing bucket
      (current versions, with their metadata) to DIR.
  phoenix.py restore OUTPUTS.json DIR
      Upload the archived landing objects back, with their metadata.
  phoenix.py compare BEFORE.json AFTER.json
      Exit 1 unless both snapshots hold the same keys with the same bytes.

Bookkeeping under _sluice/ (manifests hold processing times) is not output.

One part of a profile is not a function of its input alone: the `volume`
check compares the partition's row count with the profiles of earlier
partitions that exist when it runs, so it depends on the order in which a
replay happens to profile partitions. A profile whose bytes differ is
accepted only if it is identical without that check (and the overall status
it feeds); the summary counts those separately.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import boto3
from botocore.config import Config


def load_outputs(path):
    raw = json.load(open(path))
    return {k: v["value"] for k, v in raw.items()}


def client(outputs):
    return boto3.client(
        "s3",
        endpoint_url=outputs["endpoint"],
        region_name=outputs.get("region") or "us-east-1",
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(s3={"addressing_style": "path"}),
    )


def keys(s3, bucket):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            yield o["Key"]


def output_buckets(outputs):
    b = outputs["buckets"]
    names = [b["validated"], b["curated"], b["profiles"], b["quarantine"]]
    ghost = outputs.get("ghost")
    if ghost:
        names.append(ghost["bucket"])
    return names


def without_history(body):
    """SHA-256 of a profile without its history-dependent volume check."""
    doc = json.loads(body)
    doc["checks"] = [c for c in doc.get("checks", []) if c.get("check") != "volume"]
    doc.pop("status", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def snapshot(outputs_path, snap_path, archive=None):
    outputs = load_outputs(outputs_path)
    s3 = client(outputs)
    snap = {}
    for bucket in output_buckets(outputs):
        for key in keys(s3, bucket):
            if any(seg.startswith("_sluice") for seg in key.split("/")):
                continue
            obj = s3.get_object(Bucket=bucket, Key=key)
            meta = obj.get("Metadata", {})
            body = obj["Body"].read()
            if "sluice-stage" not in meta:
                # Not written by a stage (a test's own fixture): not output.
                continue
            entry = {
                "sha256": hashlib.sha256(body).hexdigest(),
                "bytes": len(body),
                "stage": meta["sluice-stage"],
            }
            if key.endswith(".profile.json"):
                entry["sha256_without_history"] = without_history(body)
            snap[f"s3://{bucket}/{key}"] = entry
    json.dump(snap, open(snap_path, "w"), indent=1, sort_keys=True)
    print(f"phoenix: {len(snap)} outputs in {snap_path}")
    if archive:
        root = Path(archive)
        n = 0
        for key in keys(s3, outputs["buckets"]["landing"]):
            obj = s3.get_object(Bucket=outputs["buckets"]["landing"], Key=key)
            dest = root / "objects" / f"{n:06d}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(obj["Body"].read())
            meta = {"key": key, "metadata": obj.get("Metadata", {}),
                    "content_type": obj.get("ContentType")}
            (root / "objects" / f"{n:06d}.json").write_text(json.dumps(meta))
            n += 1
        print(f"phoenix: archived {n} landing objects to {root}")


def restore(outputs_path, archive):
    outputs = load_outputs(outputs_path)
    s3 = client(outputs)
    bucket = outputs["buckets"]["landing"]
    n = 0
    for meta_path in sorted(Path(archive, "objects").glob("*.json")):
        meta = json.loads(meta_path.read_text())
        body = meta_path.with_suffix("").read_bytes()
        extra = {"Metadata": meta["metadata"]}
        if meta.get("content_type"):
            extra["ContentType"] = meta["content_type"]
        s3.put_object(Bucket=bucket, Key=meta["key"], Body=body, **extra)
        n += 1
    print(f"phoenix: restored {n} landing objects to s3://{bucket}")


def compare(before_path, after_path):
    before = json.load(open(before_path))
    after = json.load(open(after_path))
    missing = sorted(set(before) - set(after))
    extra = sorted(set(after) - set(before))
    both = set(before) & set(after)
    differ = [k for k in both if before[k]["sha256"] != after[k]["sha256"]]
    history = sorted(k for k in differ if before[k].get("sha256_without_history")
                     and before[k].get("sha256_without_history") == after[k].get("sha256_without_history"))
    changed = sorted(set(differ) - set(history))
    for what, ks in (("missing after the rebuild", missing), ("new after the rebuild", extra),
                     ("different bytes", changed)):
        for k in ks[:20]:
            print(f"phoenix: {what}: {k}")
    if missing or extra or changed:
        print(f"phoenix: FAILED: {len(missing)} missing, {len(extra)} new, {len(changed)} changed "
              f"of {len(before)} outputs")
        return 1
    if not before:
        print("phoenix: FAILED: there were no outputs to compare")
        return 1
    by_stage = {}
    for v in before.values():
        by_stage[v["stage"]] = by_stage.get(v["stage"], 0) + 1
    stages = ", ".join(f"{s} {n}" for s, n in sorted(by_stage.items()))
    identical = len(before) - len(history)
    print(f"phoenix: {identical} of {len(before)} outputs byte-identical after the rebuild ({stages})")
    if history:
        print(f"phoenix: {len(history)} profile(s) identical but for the volume check, which compares "
              "with the earlier partitions profiled at the time (order-dependent by design)")
    return 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "snapshot":
        archive = argv[argv.index("--archive") + 1] if "--archive" in argv else None
        snapshot(argv[1], argv[2], archive)
        return 0
    if len(argv) == 3 and argv[0] == "restore":
        restore(argv[1], argv[2])
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
