"""Tests of ghost_iam.py on small hand-made plans.

    python3 -m unittest discover -s infra/checks     (or: make tf-check)
"""

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ghost_iam  # noqa: E402

PROD = [
    "arn:aws:s3:::sluice-prod-landing", "arn:aws:s3:::sluice-prod-landing/*",
    "arn:aws:s3:::sluice-prod-validated", "arn:aws:s3:::sluice-prod-validated/*",
    "arn:aws:sqs:us-east-1:123456789012:sluice-prod-curate",
    "arn:aws:sqs:us-east-1:123456789012:sluice-prod-curate-dlq",
    "arn:aws:sns:us-east-1:123456789012:sluice-prod-alerts",
]
GHOST_BUCKET = "sluice-ghost-x"
Q = "arn:aws:sqs:us-east-1:123456789012:sluice-ghost-x-curate"
DLQ = Q + "-dlq"
LOGS = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/sluice-ghost-x-curate"

GOOD_STATEMENTS = [
    {"Sid": "ReadInputs", "Effect": "Allow", "Action": ["s3:GetObject"],
     "Resource": ["arn:aws:s3:::sluice-prod-validated/*"]},
    {"Sid": "ReadBackAndWriteOwnOutputs", "Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
     "Resource": [f"arn:aws:s3:::{GHOST_BUCKET}/curated/*", f"arn:aws:s3:::{GHOST_BUCKET}/quarantine/curate/*"]},
    {"Sid": "TellMissingKeysApart", "Effect": "Allow", "Action": ["s3:ListBucket"],
     "Resource": ["arn:aws:s3:::sluice-prod-validated", f"arn:aws:s3:::{GHOST_BUCKET}"]},
    {"Sid": "ConsumeItsQueue", "Effect": "Allow",
     "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"],
     "Resource": [Q]},
    {"Sid": "DeadLetterToItsDlq", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": [DLQ]},
    {"Sid": "WriteItsLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
     "Resource": [LOGS + ":*"]},
    {"Sid": "NeverProd", "Effect": "Deny", "Action": "*", "Resource": "*"},
]


def rc(address, typ, after, unknown=None, actions=("create",)):
    return {"address": address, "type": typ,
            "change": {"actions": list(actions), "after": after, "after_unknown": unknown or {}}}


def plan(statements=None, extra=(), policy_unknown=False):
    doc = json.dumps({"Version": "2012-10-17", "Statement": statements if statements is not None else GOOD_STATEMENTS})
    policy = rc("module.ghost.module.stage[\"curate\"].aws_iam_role_policy.this", "aws_iam_role_policy",
                {"name": "p", "policy": None if policy_unknown else doc},
                {"policy": True} if policy_unknown else {})
    return {
        "format_version": "1.2",
        "resource_changes": [
            rc("module.ghost.module.bucket.aws_s3_bucket.this", "aws_s3_bucket", {"bucket": GHOST_BUCKET}),
            rc("q", "aws_sqs_queue", {"name": "sluice-ghost-x-curate"}),
            rc("dlq", "aws_sqs_queue", {"name": "sluice-ghost-x-curate-dlq"}),
            rc("lg", "aws_cloudwatch_log_group", {"name": "/aws/lambda/sluice-ghost-x-curate"}),
            rc("role", "aws_iam_role", {"name": "sluice-ghost-x-curate", "inline_policy": []}),
            policy,
            *extra,
        ],
        "output_changes": {"prod_resource_arns": {"actions": ["create"], "after": PROD}},
    }


def with_statement(st):
    return plan(GOOD_STATEMENTS + [st])


def findings(p):
    return ghost_iam.walk(p)[0]


class GhostIamTest(unittest.TestCase):
    def assertFails(self, p, needle):
        f = findings(p)
        self.assertTrue(f, "expected the check to fail")
        self.assertTrue(any(needle in x for x in f), f"no finding mentions {needle!r}: {f}")

    def test_the_module_shaped_policy_passes(self):
        self.assertEqual(findings(plan()), [])

    def test_put_object_on_a_prod_bucket_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": "s3:PutObject",
                                         "Resource": "arn:aws:s3:::sluice-prod-validated/curated/*"}), "covers prod")

    def test_s3_star_on_everything_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}), "covers prod")

    def test_star_action_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": "*",
                                         "Resource": "arn:aws:s3:::sluice-prod-*"}), "covers prod")

    def test_send_to_the_prod_dlq_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": ["sqs:SendMessage"],
                                         "Resource": [PROD[5]]}), "sluice-prod-curate-dlq")

    def test_consuming_the_prod_queue_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": "sqs:ReceiveMessage",
                                         "Resource": PROD[4]}), "covers prod")

    def test_publish_to_the_prod_topic_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": "sns:Publish",
                                         "Resource": "arn:aws:sns:*:*:sluice-prod-alerts"}), "covers prod")

    def test_a_wildcard_that_widens_the_ghost_bucket_name_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": "s3:PutObject",
                                         "Resource": f"arn:aws:s3:::{GHOST_BUCKET}*"}), "does not create")

    def test_writing_a_bucket_the_plan_does_not_create_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": "s3:PutObject",
                                         "Resource": "arn:aws:s3:::somebody-elses-bucket/*"}), "does not create")

    def test_reads_of_prod_pass(self):
        self.assertEqual(findings(with_statement({"Effect": "Allow", "Action": ["s3:Get*", "s3:ListBucket"],
                                                  "Resource": ["arn:aws:s3:::sluice-prod-landing", PROD[1]]})), [])

    def test_a_read_looking_prefix_that_is_not_a_read_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": "s3:G*", "Resource": PROD[1]}), "covers prod")

    def test_not_resource_fails(self):
        self.assertFails(with_statement({"Effect": "Allow", "Action": "s3:PutObject",
                                         "NotResource": f"arn:aws:s3:::{GHOST_BUCKET}/*"}), "NotAction/NotResource")

    def test_a_policy_unknown_at_plan_time_fails(self):
        self.assertFails(plan(policy_unknown=True), "unknown at plan time")

    def test_an_aws_managed_attachment_fails(self):
        att = rc("att", "aws_iam_role_policy_attachment",
                 {"role": "sluice-ghost-x-curate", "policy_arn": "arn:aws:iam::aws:policy/AmazonS3FullAccess"})
        self.assertFails(plan(extra=[att]), "AWS-managed")

    def test_inline_policy_blocks_of_roles_are_checked(self):
        bad = json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": PROD[1]}]})
        role = rc("role2", "aws_iam_role", {"name": "r2", "inline_policy": [{"name": "x", "policy": bad}]})
        self.assertFails(plan(extra=[role]), "covers prod")

    def test_deleted_resources_are_ignored(self):
        p = plan()
        gone = copy.deepcopy(p["resource_changes"][-1])
        gone["change"]["actions"] = ["delete"]
        gone["change"]["after"] = None
        p["resource_changes"].append(gone)
        self.assertEqual(findings(p), [])

    def test_no_prod_arns_means_no_proof(self):
        p = plan()
        del p["output_changes"]
        self.assertEqual(self._main([self._write(p)]), 1)

    def test_cli_exit_codes(self):
        self.assertEqual(self._main([self._write(plan())]), 0)
        bad = with_statement({"Effect": "Allow", "Action": "s3:PutObject", "Resource": PROD[3]})
        self.assertEqual(self._main([self._write(bad)]), 1)
        self.assertEqual(self._main(["/nonexistent/plan.json"]), 2)

    def _main(self, argv):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return ghost_iam.main(argv)

    def test_runs_as_a_script(self):
        r = subprocess.run([sys.executable, ghost_iam.__file__, self._write(plan())], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_globs_overlap(self):
        o = ghost_iam.globs_overlap
        self.assertTrue(o("*", "arn:aws:s3:::b"))
        self.assertTrue(o("arn:aws:s3:::b/x*", "arn:aws:s3:::b/*"))
        self.assertTrue(o("arn:aws:s3:::b?", "arn:aws:s3:::b*"))
        self.assertFalse(o("arn:aws:s3:::ghost/*", "arn:aws:s3:::prod/*"))
        self.assertFalse(o("arn:aws:s3:::b", "arn:aws:s3:::b/*"))

    def _write(self, p):
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(p, f)
        self.addCleanup(os.unlink, path)
        return path


if __name__ == "__main__":
    unittest.main()
