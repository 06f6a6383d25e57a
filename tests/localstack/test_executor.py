"""Proves that LocalStack runs Lambda functions through the `process` executor.

Needs a LocalStack already running (``tests/localstack/localstack.sh up``) on
127.0.0.1:$LOCALSTACK_PORT (default 4566); starts nothing itself. Run with the
harness virtualenv's Python, either way:

    .venv/localstack/bin/python tests/localstack/test_executor.py
    .venv/localstack/bin/python -m pytest tests/localstack/test_executor.py

The functions under test are ``provided.al2023`` zips whose ``bootstrap`` is a
small Python script speaking the Lambda Runtime API, so no Rust build is
needed. Its behaviour is picked by the function's ``MODE`` variable.
"""

import base64
import io
import json
import os
import statistics
import sys
import time
import unittest
import urllib.request
import uuid
import zipfile

import boto3
from botocore.config import Config

PORT = int(os.environ.get("LOCALSTACK_PORT", "4566"))
ENDPOINT = f"http://127.0.0.1:{PORT}"
REGION = "us-east-1"
RUN = uuid.uuid4().hex[:8]  # keeps names unique per run

BOOTSTRAP = r'''#!/usr/bin/env python3
"""Test runtime: MODE=echo | fail | crash | exit (from the function's env).

One HTTP/1.1 connection is kept alive for every call, and responses are sent
with chunked transfer encoding, as HTTP clients such as hyper may do."""
import http.client, json, os, sys, time, urllib.request

MODE = os.environ.get("MODE", "echo")
if MODE == "exit":
    print("sluice-test: exiting during init", flush=True)
    sys.exit(3)

API = "/2018-06-01/runtime/invocation"
conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
print("sluice-test: init done", flush=True)

def post(path, body, headers=None, chunked=False):
    chunks = (body[i:i + 200] for i in range(0, len(body), 200)) if chunked else body
    conn.request("POST", path, chunks, headers or {}, encode_chunked=chunked)
    response = conn.getresponse()
    response.read()
    return response.status

while True:
    conn.request("GET", API + "/next")
    conn_port = conn.sock.getsockname()[1]  # same port every time = keep-alive works
    response = conn.getresponse()
    request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
    deadline_ms = int(response.headers["Lambda-Runtime-Deadline-Ms"])
    function_arn = response.headers["Lambda-Runtime-Invoked-Function-Arn"]
    trace_id = response.headers["Lambda-Runtime-Trace-Id"]
    event = json.loads(response.read())
    print(f"sluice-test: got {json.dumps(event)}", flush=True)
    time.sleep(event.get("sleep", 0))
    if MODE == "crash":
        sys.exit(7)
    if MODE == "fail":
        body = json.dumps({"errorType": "TestFailure", "errorMessage": "failed on purpose"})
        status = post(API + f"/{request_id}/error", body.encode(),
                      {"Lambda-Runtime-Function-Error-Type": "TestFailure"})
        print(f"sluice-test: error posted ({status})", flush=True)
        continue
    for i in range(event.get("noise", 0)):
        print(f"sluice-test: noise {i}", flush=True)
    with urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + "/_localstack/health") as r:
        health_status = r.status
    reply = {
        "echo": event,
        "remaining_ms": deadline_ms - int(time.time() * 1000),
        "function_arn": function_arn,
        "trace_id": trace_id,
        "pid": os.getpid(),
        "conn_port": conn_port,
        "cwd": os.getcwd(),
        "health_status": health_status,
        "env": {k: os.environ.get(k) for k in (
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_FUNCTION_VERSION", "AWS_REGION", "AWS_ENDPOINT_URL",
            "LAMBDA_TASK_ROOT", "_HANDLER", "PATH", "LANG", "HOME", "HOSTNAME",
            "LOCALSTACK_RUNTIME_ID", "LOCALSTACK_RUNTIME_ENDPOINT", "MODE",
            "AWS_ACCESS_KEY_ID",
        )},
    }
    print(f"sluice-test: done {request_id}", flush=True)
    status = post(API + f"/{request_id}/response", json.dumps(reply).encode(), chunked=True)
    assert status == 202, status
'''


def client(service):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def make_zip(bootstrap: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        archive.writestr(info, bootstrap)
    return buffer.getvalue()


def health() -> dict:
    with urllib.request.urlopen(f"{ENDPOINT}/_localstack/health", timeout=5) as response:
        return json.loads(response.read())


class ProcessExecutorTest(unittest.TestCase):
    functions: list[str] = []
    queues: list[str] = []

    @classmethod
    def setUpClass(cls):
        info = health()
        print(f"\nLocalStack {info.get('version')} at {ENDPOINT}", file=sys.stderr)
        print("mode: host (process executor)", file=sys.stderr)
        cls.awslambda = client("lambda")
        cls.sqs = client("sqs")
        iam = client("iam")
        role_name = f"sluice-test-{RUN}"
        cls.role_arn = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        cls.role_name = role_name

    @classmethod
    def tearDownClass(cls):
        for name in cls.functions:
            cls.awslambda.delete_function(FunctionName=name)
        for url in cls.queues:
            cls.sqs.delete_queue(QueueUrl=url)
        client("iam").delete_role(RoleName=cls.role_name)

    def create_function(self, mode: str, timeout: int = 10, code: bytes | None = None) -> str:
        name = f"sluice-{mode}-{RUN}"
        self.awslambda.create_function(
            FunctionName=name,
            Runtime="provided.al2023",
            Handler="bootstrap",
            Role=self.role_arn,
            Code={"ZipFile": code or make_zip(BOOTSTRAP)},
            Timeout=timeout,
            MemorySize=256,
            Environment={"Variables": {"MODE": mode}},
        )
        self.functions.append(name)
        self.awslambda.get_waiter("function_active_v2").wait(FunctionName=name)
        return name

    def invoke(self, name: str, event: dict, tail: bool = False) -> tuple[dict, dict, float]:
        """Synchronous invoke; returns (response, decoded payload, seconds)."""
        started = time.perf_counter()
        response = self.awslambda.invoke(
            FunctionName=name,
            Payload=json.dumps(event).encode(),
            LogType="Tail" if tail else "None",
        )
        elapsed = time.perf_counter() - started
        return response, json.loads(response["Payload"].read()), elapsed

    def test_sync_invoke_echoes_and_returns_logs(self):
        name = self.create_function("echo")
        event = {"hello": "world", "n": 1}

        response, payload, cold = self.invoke(name, event, tail=True)
        self.assertNotIn("FunctionError", response, payload)
        self.assertEqual(payload["echo"], event)
        self.assertEqual(payload["health_status"], 200)  # reached LocalStack from inside
        self.assertTrue(payload["function_arn"].endswith(f":function:{name}"))
        self.assertTrue(payload["trace_id"].startswith("Root="), payload["trace_id"])
        self.assertTrue(0 < payload["remaining_ms"] <= 10_000, payload["remaining_ms"])

        env = payload["env"]
        self.assertEqual(env["AWS_LAMBDA_FUNCTION_NAME"], name)
        self.assertEqual(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256")
        self.assertEqual(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST")
        self.assertEqual(env["AWS_REGION"], REGION)
        self.assertEqual(env["AWS_ENDPOINT_URL"], ENDPOINT)
        self.assertEqual(env["MODE"], "echo")
        self.assertEqual(env["_HANDLER"], "bootstrap")
        self.assertTrue(env["AWS_ACCESS_KEY_ID"])
        self.assertEqual(env["LAMBDA_TASK_ROOT"], payload["cwd"])
        self.assertTrue(env["PATH"])
        for internal in ("HOME", "HOSTNAME", "LOCALSTACK_RUNTIME_ID", "LOCALSTACK_RUNTIME_ENDPOINT"):
            self.assertIsNone(env[internal], internal)

        logs = base64.b64decode(response["LogResult"]).decode()
        self.assertIn("sluice-test: init done", logs)
        self.assertIn(f"sluice-test: got {json.dumps(event)}", logs)
        self.assertIn("START RequestId:", logs)
        self.assertIn("END RequestId:", logs)
        self.assertIn("REPORT RequestId:", logs)
        self.assertIn("Init Duration:", logs)  # first invoke of a fresh environment

        # Warm invokes reuse the same process; the last line printed before the
        # response must survive in the logs (the pipe is drained first).
        warm = []
        for i in range(5):
            response, payload, seconds = self.invoke(name, {"i": i, "noise": 50}, tail=True)
            warm.append(seconds)
            self.assertEqual(payload["echo"]["i"], i)
            logs = base64.b64decode(response["LogResult"]).decode()
            self.assertIn("sluice-test: noise 49", logs)
            self.assertIn("sluice-test: done", logs)
            self.assertNotIn("Init Duration:", logs)
        pids, ports = {payload["pid"]}, {payload["conn_port"]}
        _, payload, _ = self.invoke(name, {})
        pids.add(payload["pid"])
        ports.add(payload["conn_port"])
        self.assertEqual(len(pids), 1, "warm invokes should reuse the bootstrap process")
        self.assertEqual(len(ports), 1, "the Runtime API connection should be kept alive")
        print(
            f"\n  cold invoke {cold * 1000:.0f} ms, warm invoke median "
            f"{statistics.median(warm) * 1000:.0f} ms (min {min(warm) * 1000:.0f} ms)",
            file=sys.stderr,
        )

    def test_timeout_kills_and_restarts(self):
        name = self.create_function("echo-slow", timeout=1)
        _, first, _ = self.invoke(name, {"warm": True})
        self.assertEqual(first["echo"], {"warm": True})

        started = time.perf_counter()
        response, payload, _ = self.invoke(name, {"sleep": 5}, tail=True)
        elapsed = time.perf_counter() - started
        self.assertEqual(response.get("FunctionError"), "Unhandled", payload)
        self.assertIn("Task timed out after 1.00 seconds", payload["errorMessage"])
        self.assertLess(elapsed, 4, "the timeout must not wait for the sleeping function")
        logs = base64.b64decode(response["LogResult"]).decode()
        self.assertIn("Task timed out after 1.00 seconds", logs)
        self.assertIn('sluice-test: got {"sleep": 5}', logs)

        # The next invoke gets a fresh bootstrap process.
        response, payload, _ = self.invoke(name, {"after": "timeout"})
        self.assertNotIn("FunctionError", response, payload)
        self.assertEqual(payload["echo"], {"after": "timeout"})
        self.assertNotEqual(payload["pid"], first["pid"])

    def test_exit_during_init_is_runtime_exit_error(self):
        name = self.create_function("exit")
        response, payload, _ = self.invoke(name, {})
        self.assertEqual(response.get("FunctionError"), "Unhandled", payload)
        self.assertEqual(payload["errorType"], "Runtime.ExitError", payload)
        self.assertIn("exit status 3", payload["errorMessage"])

    def test_crash_during_invoke_is_runtime_exit_error(self):
        name = self.create_function("crash")
        response, payload, _ = self.invoke(name, {"boom": 1}, tail=True)
        self.assertEqual(response.get("FunctionError"), "Unhandled", payload)
        self.assertEqual(payload["errorType"], "Runtime.ExitError", payload)
        self.assertIn("exit status 7", payload["errorMessage"])
        logs = base64.b64decode(response["LogResult"]).decode()
        self.assertIn('sluice-test: got {"boom": 1}', logs)
        # And the function recovers: the next invoke starts it again (and it crashes again).
        response, payload, _ = self.invoke(name, {"boom": 2})
        self.assertEqual(payload["errorType"], "Runtime.ExitError", payload)

    def test_non_executable_bootstrap_is_invalid_entrypoint(self):
        # No shebang and not a binary: exec fails even after chmod +x.
        name = self.create_function("noexec", code=make_zip("just some text\n"))
        response, payload, _ = self.invoke(name, {})
        self.assertEqual(response.get("FunctionError"), "Unhandled", payload)
        self.assertEqual(payload["errorType"], "Runtime.InvalidEntrypoint", payload)

    def test_async_failure_goes_to_on_failure_destination(self):
        queue_url = self.sqs.create_queue(QueueName=f"sluice-failures-{RUN}")["QueueUrl"]
        self.queues.append(queue_url)
        self.assertTrue(queue_url.startswith(ENDPOINT), queue_url)  # usable as-is
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        name = self.create_function("fail")
        self.awslambda.put_function_event_invoke_config(
            FunctionName=name,
            MaximumRetryAttempts=2,
            DestinationConfig={"OnFailure": {"Destination": queue_arn}},
        )

        marker = uuid.uuid4().hex
        response = self.awslambda.invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps({"marker": marker})
        )
        self.assertEqual(response["StatusCode"], 202)

        started = time.monotonic()
        record = None
        while record is None and time.monotonic() - started < 60:
            messages = self.sqs.receive_message(
                QueueUrl=queue_url, WaitTimeSeconds=5, MaxNumberOfMessages=1
            ).get("Messages", [])
            for message in messages:
                record = json.loads(message["Body"])
        self.assertIsNotNone(record, "no message on the on-failure destination within 60 s")
        self.assertEqual(record["requestPayload"], {"marker": marker})
        self.assertEqual(record["requestContext"]["condition"], "RetriesExhausted")
        self.assertEqual(record["requestContext"]["approximateInvokeCount"], 3)
        self.assertEqual(record["responseContext"]["functionError"], "Unhandled")
        self.assertEqual(record["responsePayload"]["errorType"], "TestFailure")
        print(f"\n  on-failure delivery after {time.monotonic() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"executor: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or not result.testsRun else 0)
