#!/usr/bin/env python3
"""Cold start of a Lambda bootstrap: process start to its first request to
the Lambda Runtime API (GET /2018-06-01/runtime/invocation/next), measured
against a minimal local Runtime API. Prints the median of N runs, in ms."""
import os
import socket
import statistics
import subprocess
import sys
import time


def once(binary: str, stage: str) -> float:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": f"sluice-{stage}",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/sluice-{stage}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "SLUICE_INPUT": {"ingest": "s3://landing/raw/", "curate": "s3://validated/", "profile": "s3://curated/"}[stage],
        "SLUICE_OUTPUT": {"ingest": "s3://validated/", "curate": "s3://curated/", "profile": "s3://profiles/"}[stage],
        "SLUICE_DLQ": f"https://sqs.us-east-1.amazonaws.com/000000000000/sluice-{stage}-dlq",
    }
    if stage == "profile":
        env["SLUICE_ALERTS"] = "arn:aws:sns:us-east-1:000000000000:sluice-alerts"
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv.settimeout(10)
    try:
        conn, _ = srv.accept()
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        elapsed = time.perf_counter() - start
        if b"/runtime/invocation/next" not in data:
            raise RuntimeError(f"{binary}: unexpected first request {data[:80]!r}")
        conn.close()
    finally:
        proc.kill()
        proc.wait()
        srv.close()
    return elapsed * 1000


def main() -> int:
    runs = int(os.environ.get("RUNS", "7"))
    for arg in sys.argv[1:]:
        stage, binary = arg.split("=", 1)
        times = [once(binary, stage) for _ in range(runs)]
        print(f"cold start {stage:<8} median {statistics.median(times):6.1f} ms  (min {min(times):.1f}, max {max(times):.1f}, {runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
