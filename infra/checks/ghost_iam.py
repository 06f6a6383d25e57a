#!/usr/bin/env python3
"""Prove from a Terraform plan that ghost roles can write nothing in prod.

    terraform show -json plan.bin > plan.json
    python3 infra/checks/ghost_iam.py plan.json [--prod-arn ARN ...]

Walks every IAM identity policy the plan creates or updates
(aws_iam_role_policy, aws_iam_policy, inline_policy blocks of aws_iam_role,
and managed-policy attachments) and fails when an Allow statement:

  1. grants any action that is not read-only on a resource pattern that covers
     a prod resource (the plan's `prod_resource_arns` output, plus --prod-arn);
  2. grants any action that is not read-only on a resource the plan does not
     itself create (so a ghost writes only its own bucket, queues, topic and
     log groups, whatever prod is called);
  3. cannot be judged: NotAction or NotResource, a policy unknown at plan
     time, or an AWS-managed policy attached.

"Read-only" means actions named Get*, List*, Describe* or Head* (plus a few
named ones). Everything else counts as a write, including sqs:ReceiveMessage
and sqs:ChangeMessageVisibility: a ghost that consumed a prod queue would steal
prod's messages. Wildcards follow IAM: `*` and `?`, case-insensitive actions.

Exit status 0 when every policy passes, 1 with one line per finding otherwise,
2 on bad input.
"""

import argparse
import functools
import json
import re
import sys

READ_VERBS = ("get", "list", "describe", "head")
READ_ONLY_ACTIONS = {"sqs:getqueueurl", "sts:getcalleridentity"}

POLICY_RESOURCE_TYPES = {"aws_iam_role_policy": "policy", "aws_iam_policy": "policy"}
ATTACHMENT_TYPES = {"aws_iam_role_policy_attachment", "aws_iam_policy_attachment",
                    "aws_iam_role_policies_exclusive", "aws_iam_role_policy_attachments_exclusive"}

# What a plan creates, by resource type: the attribute naming it, the ARN glob
# of the resource itself, and the separators after which its sub-resources
# follow (objects of a bucket, streams of a log group, versions of a function).
OWNED = {
    "aws_s3_bucket": ("bucket", "arn:*:s3:::{n}", ("/",)),
    "aws_sqs_queue": ("name", "arn:*:sqs:*:*:{n}", ()),
    "aws_sns_topic": ("name", "arn:*:sns:*:*:{n}", ()),
    "aws_cloudwatch_log_group": ("name", "arn:*:logs:*:*:log-group:{n}", (":",)),
    "aws_lambda_function": ("function_name", "arn:*:lambda:*:*:function:{n}", (":",)),
}


def glob_to_regex(pattern, ignore_case=False):
    """IAM wildcard pattern (* and ?) to a compiled regex."""
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE if ignore_case else 0)


def as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def action_is_read_only(action):
    a = action.lower()
    if a == "*":
        return False
    if a in READ_ONLY_ACTIONS:
        return True
    service, _, name = a.partition(":")
    if not name:
        return False
    if any(name.startswith(v) for v in READ_VERBS):
        # A pattern like s3:get* only matches reads; s3:g* could match more.
        literal = name.split("*", 1)[0].split("?", 1)[0]
        return any(literal.startswith(v) for v in READ_VERBS)
    return False


def globs_overlap(p, q):
    """Whether some string matches both IAM wildcard patterns p and q."""
    n, m = len(p), len(q)

    @functools.lru_cache(maxsize=None)
    def ov(i, j):
        if i == n and j == m:
            return True
        if i < n and p[i] == "*":
            if ov(i + 1, j) or (j < m and ov(i, j + 1)):
                return True
        if j < m and q[j] == "*":
            if ov(i, j + 1) or (i < n and ov(i + 1, j)):
                return True
        if i < n and j < m and p[i] != "*" and q[j] != "*":
            if p[i] == "?" or q[j] == "?" or p[i] == q[j]:
                return ov(i + 1, j + 1)
        return False

    return ov(0, 0)


def has_wildcard(s):
    return "*" in s or "?" in s


def resource_owned(pattern, owned):
    """Whether everything `pattern` matches belongs to a resource the plan creates.

    The pattern must name an owned resource literally; wildcards may only
    follow it, past a separator (e.g. arn:aws:s3:::ghost/curated/*, but not
    arn:aws:s3:::ghost* which also matches ghost-and-something-else).
    """
    for base, seps in owned:
        rx = glob_to_regex(base)
        if not has_wildcard(pattern) and rx.match(pattern):
            return True
        for sep in seps:
            for i, ch in enumerate(pattern):
                if ch == sep and not has_wildcard(pattern[:i]) and rx.match(pattern[:i]):
                    return True
    return False


def statements(doc):
    if isinstance(doc, str):
        doc = json.loads(doc)
    return as_list(doc.get("Statement"))


def check_statement(where, st, prod_arns, owned):
    findings = []
    if st.get("Effect", "Allow") != "Allow":
        return findings
    sid = st.get("Sid") or "(no Sid)"
    loc = f"{where} statement {sid}"
    if "NotAction" in st or "NotResource" in st:
        return [f"{loc}: uses NotAction/NotResource, which cannot be proven safe"]
    writes = [a for a in as_list(st.get("Action")) if not action_is_read_only(a)]
    if not writes:
        return findings
    for res in as_list(st.get("Resource")):
        hit = [p for p in prod_arns if globs_overlap(res, p)]
        if hit:
            findings.append(f"{loc}: allows {', '.join(writes)} on {res}, which covers prod {hit[0]}")
        elif not resource_owned(res, owned):
            findings.append(f"{loc}: allows {', '.join(writes)} on {res}, which this plan does not create")
    return findings


def walk(plan, extra_prod_arns=()):
    changes = [rc for rc in plan.get("resource_changes", [])
               if set(rc.get("change", {}).get("actions", [])) & {"create", "update"}]

    prod_arns = list(extra_prod_arns)
    out = plan.get("output_changes", {}).get("prod_resource_arns") or {}
    prod_arns += as_list(out.get("after"))
    if not prod_arns:
        pv = plan.get("planned_values", {}).get("outputs", {}).get("prod_resource_arns", {})
        prod_arns += as_list(pv.get("value"))

    owned = []
    for rc in changes:
        spec = OWNED.get(rc.get("type"))
        after = rc["change"].get("after") or {}
        if spec and isinstance(after.get(spec[0]), str):
            owned.append((spec[1].format(n=after[spec[0]]), spec[2]))

    findings, checked = [], 0
    for rc in changes:
        addr, typ = rc.get("address"), rc.get("type")
        after = rc["change"].get("after") or {}
        unknown = rc["change"].get("after_unknown") or {}
        docs = []
        if typ in POLICY_RESOURCE_TYPES:
            attr = POLICY_RESOURCE_TYPES[typ]
            if unknown.get(attr) or after.get(attr) is None:
                findings.append(f"{addr}: policy is unknown at plan time, so it cannot be checked "
                                "(build its ARNs from names, as modules/stage does)")
                continue
            docs.append((addr, after[attr]))
        elif typ == "aws_iam_role":
            for i, ip in enumerate(as_list(after.get("inline_policy"))):
                if ip.get("policy"):
                    docs.append((f"{addr}.inline_policy[{i}]", ip["policy"]))
            if as_list(after.get("managed_policy_arns")):
                findings.append(f"{addr}: attaches managed policies {after['managed_policy_arns']}, which cannot be checked")
        elif typ in ATTACHMENT_TYPES:
            arns = as_list(after.get("policy_arn")) + as_list(after.get("policy_arns"))
            for a in arns:
                if isinstance(a, str) and ":iam::aws:policy/" in a:
                    findings.append(f"{addr}: attaches AWS-managed policy {a}, which cannot be checked")
            continue
        for where, doc in docs:
            checked += 1
            try:
                for st in statements(doc):
                    findings += check_statement(where, st, prod_arns, owned)
            except (ValueError, AttributeError) as e:
                findings.append(f"{where}: unreadable policy ({e})")
    return findings, checked, prod_arns


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fail if a ghost plan lets any role write prod.")
    ap.add_argument("plan_json", help="output of terraform show -json <planfile>")
    ap.add_argument("--prod-arn", action="append", default=[], help="another prod ARN (glob) to protect")
    ap.add_argument("--min-policies", type=int, default=1, help="fail if fewer policies were checked (default 1)")
    args = ap.parse_args(argv)
    try:
        with open(args.plan_json) as f:
            plan = json.load(f)
    except (OSError, ValueError) as e:
        print(f"ghost_iam: cannot read {args.plan_json}: {e}", file=sys.stderr)
        return 2
    findings, checked, prod_arns = walk(plan, args.prod_arn)
    if not prod_arns:
        findings.append("no prod ARNs to protect: the plan has no prod_resource_arns output and none were given")
    if checked < args.min_policies:
        findings.append(f"only {checked} policies found in the plan (expected at least {args.min_policies})")
    if findings:
        for f in findings:
            print(f"ghost_iam: FAIL {f}")
        print(f"ghost_iam: {len(findings)} problem(s) in {checked} policies")
        return 1
    print(f"ghost_iam: ok: {checked} policies write nothing in prod ({len(prod_arns)} prod ARNs protected) "
          "and only what the plan creates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
