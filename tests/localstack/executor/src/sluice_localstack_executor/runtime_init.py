"""The per-environment init process: plays LocalStack's Go ``lambda-runtime-init``.

Run as ``python -I runtime_init.py --listen-fd N`` by ``executor.py``, with the
function's code directory as working directory and LocalStack's variables for
the function as its whole environment. Standard library only.

On one HTTP server (the inherited socket) it serves both sides:

- LocalStack's ``POST /invoke`` (answered 200 at once, then processed);
- the Lambda Runtime API for the bootstrap, ``/2018-06-01/runtime/...``.

It spawns ``$LAMBDA_TASK_ROOT/bootstrap`` straight away (the init phase), and
reports back to ``$LOCALSTACK_RUNTIME_ENDPOINT``:

- ``status/<id>/ready`` once, when the bootstrap first asks for an invocation,
  or ``status/<id>/error`` if it cannot get that far;
- per invocation, first ``invocations/<req>/logs``, then ``.../response`` or
  ``.../error``: LocalStack attaches the logs when the result arrives.

It also does what Lambda does around the runtime: timeouts (kill, restart on
the next invoke), crashes (``Runtime.ExitError``), a missing or non-executable
bootstrap (``Runtime.InvalidEntrypoint``), and START/END/REPORT log lines.
"""

import argparse
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNTIME_PREFIX = "/2018-06-01/runtime"

# LocalStack-internal variables the bootstrap must not see, the same list as
# the Go init's UnsetLsEnvs (HOSTNAME/HOME do not belong to a function either).
INTERNAL_ENV = {
    "LOCALSTACK_RUNTIME_ENDPOINT",
    "LOCALSTACK_RUNTIME_ID",
    "LOCALSTACK_INTEROP_PORT",
    "LOCALSTACK_RUNTIME_TRACING_PORT",
    "LOCALSTACK_USER",
    "LOCALSTACK_CODE_ARCHIVES",
    "LOCALSTACK_HOT_RELOADING_PATHS",
    "LOCALSTACK_ENABLE_DNS_SERVER",
    "LOCALSTACK_ENABLE_XRAY_TELEMETRY",
    "LOCALSTACK_INIT_LOG_LEVEL",
    "LOCALSTACK_POST_INVOKE_WAIT_MS",
    "HOSTNAME",
    "HOME",
}


def log(message: str) -> None:
    """Init diagnostics; stderr is LocalStack's own log."""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "?")
    print(f"[sluice-init {name}] {message}", file=sys.stderr, flush=True)


def error_json(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def describe_exit(returncode: int) -> str:
    """Go's wording for a process exit, as Lambda reports it."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return "signal: " + {"SIGKILL": "killed", "SIGTERM": "terminated"}.get(name, name.lower())


class LocalStack:
    """Callbacks to LocalStack's executor endpoint (never through a proxy)."""

    def __init__(self, base_url: str, runtime_id: str):
        self.base_url = base_url.rstrip("/")
        self.runtime_id = runtime_id
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post(self, path: str, body: bytes) -> None:
        request = urllib.request.Request(
            self.base_url + path,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with self.opener.open(request, timeout=30) as response:
                response.read()
        except Exception as e:  # LocalStack gone or refused: nothing else to do
            log(f"POST {path} failed: {e}")

    def status(self, status: str, body: bytes = b"") -> None:
        self.post(f"/status/{self.runtime_id}/{status}", body)


class Output:
    """The bootstrap's merged stdout/stderr, collected until an invocation takes it.

    One pipe serves every bootstrap this init starts. A reader thread empties
    it continuously; ``take()`` reads whatever is still in the pipe itself
    (under the same lock) so no line written before the result is lost.
    """

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.lock = threading.Lock()
        self.buffer = bytearray()
        threading.Thread(target=self._reader, daemon=True).start()

    def _pump(self) -> None:  # caller holds self.lock
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            self.buffer += chunk

    def _reader(self) -> None:
        while True:
            select.select([self.read_fd], [], [], 1.0)
            with self.lock:
                self._pump()

    def line(self, text: str) -> None:
        """Append a line of the init's own (START, END, ...) after what is pending."""
        with self.lock:
            self._pump()
            if self.buffer and not self.buffer.endswith(b"\n"):
                self.buffer += b"\n"
            self.buffer += text.encode() + b"\n"

    def take(self) -> str:
        with self.lock:
            self._pump()
            data = bytes(self.buffer)
            self.buffer.clear()
        return data.decode("utf-8", "replace")


class Invocation:
    def __init__(self, request: dict):
        self.id = request["invoke-id"]
        self.function_arn = request.get("invoked-function-arn", "")
        self.payload = (request.get("payload") or "").encode()
        self.trace_id = request.get("trace-id", "")
        self.deadline_ms = 0
        self.delivered = False  # handed to the bootstrap by GET next
        self.result: tuple[str, bytes] | None = None  # ("response" | "error", body)


class Init:
    """State shared by the HTTP handlers, guarded by one condition variable."""

    def __init__(self, port: int):
        self.task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
        self.timeout = int(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT") or 3)
        self.memory_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.localstack = LocalStack(
            os.environ["LOCALSTACK_RUNTIME_ENDPOINT"], os.environ["LOCALSTACK_RUNTIME_ID"]
        )
        self.bootstrap_env = {k: v for k, v in os.environ.items() if k not in INTERNAL_ENV}
        self.bootstrap_env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{port}"
        self.output = Output()
        self.stopping = threading.Event()

        self.cv = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None  # of self.proc, once it has exited
        self.generation = 0  # bumped per spawn; stale long polls give up
        self.spawned_at = 0.0
        self.init_ms: float | None = None  # spawn to first GET next
        self.init_reported = True  # "Init Duration" goes on the first REPORT only
        self.ready_sent = False
        self.init_failed = False
        self.pending: Invocation | None = None  # waiting for GET next
        self.current: Invocation | None = None  # being processed

    # --- the bootstrap process -------------------------------------------------

    def spawn(self) -> str | None:
        """Start the bootstrap; returns an error message if it cannot be run."""
        path = os.path.join(self.task_root, "bootstrap")
        if not os.path.isfile(path):
            return f"Couldn't find valid bootstrap(s): [{path}]"
        with self.cv:
            try:
                mode = os.stat(path).st_mode
                if mode & 0o111 != 0o111:
                    os.chmod(path, mode | 0o111)  # zips often lose the x bit
                proc = subprocess.Popen(
                    [path],
                    cwd=self.task_root,
                    env=self.bootstrap_env,
                    stdin=subprocess.DEVNULL,
                    stdout=self.output.write_fd,
                    stderr=self.output.write_fd,
                    start_new_session=True,  # so a timeout kills its children too
                )
            except OSError as e:
                return f"fork/exec {path}: {(e.strerror or str(e)).lower()}"
            self.proc, self.exit_code = proc, None
            self.generation += 1
            self.spawned_at, self.init_ms, self.init_reported = time.monotonic(), None, False
            self.cv.notify_all()
        threading.Thread(target=self._watch, args=(proc,), daemon=True).start()
        return None

    def _watch(self, proc: subprocess.Popen) -> None:
        code = proc.wait()
        with self.cv:
            if self.proc is not proc:
                return
            self.exit_code = code
            self.cv.notify_all()
            report = not self.ready_sent and not self.init_failed and not self.stopping.is_set()
            self.init_failed |= report
        if report:  # died during the init phase: the environment cannot start
            log(f"bootstrap exited during init ({describe_exit(code)}):\n{self.output.take()}")
            message = f"Error: Runtime exited with error: {describe_exit(code)}"
            self.localstack.status("error", error_json("Runtime.ExitError", message))
            self.stopping.set()

    def kill_bootstrap(self, grace: float = 0.0) -> None:
        """Stop the bootstrap's whole process group: SIGTERM if given a grace
        period, then SIGKILL; returns once the bootstrap has exited."""
        with self.cv:
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if grace:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(grace)
                    return
                except subprocess.TimeoutExpired:
                    pass
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def max_memory_mb(self) -> int:
        """Peak RSS of the bootstrap (VmHWM), as REPORT's "Max Memory Used"."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return math.ceil(int(line.split()[1]) / 1024)
        except (OSError, AttributeError, ValueError):
            pass
        return 0

    # --- one invocation, from POST /invoke to the callbacks -----------------

    def run_invocation(self, inv: Invocation) -> None:
        started = time.monotonic()
        inv.deadline_ms = int((time.time() + self.timeout) * 1000)
        with self.cv:
            self.current = inv
            restart = self.proc is None or self.exit_code is not None
        self.output.line(f"START RequestId: {inv.id} Version: {self.version}")

        if restart:  # killed after a timeout or crashed since: init again
            problem = self.spawn()
            if problem:
                message = f"RequestId: {inv.id} Error: {problem}"
                self.output.line(message + "\nRuntime.InvalidEntrypoint")
                inv.result = ("error", error_json("Runtime.InvalidEntrypoint", message))

        timed_out = False
        with self.cv:
            if inv.result is None:
                self.pending = inv
                self.cv.notify_all()
            while inv.result is None:
                if self.exit_code is not None:
                    message = (
                        f"RequestId: {inv.id} Error: Runtime exited with error: "
                        f"{describe_exit(self.exit_code)}"
                    )
                    inv.result = ("error", error_json("Runtime.ExitError", message))
                    self.output.line(message + "\nRuntime.ExitError")
                    break
                remaining = started + self.timeout - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    message = f"RequestId: {inv.id} Error: Task timed out after {self.timeout}.00 seconds"
                    inv.result = ("error", error_json("Sandbox.Timedout", message))
                    break
                self.cv.wait(remaining)
            self.pending = None
            init_ms = None if self.init_reported else self.init_ms
            self.init_reported = True

        if timed_out:
            self.kill_bootstrap()  # its last output is in the pipe once it is gone
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            self.output.line(f"{stamp} {inv.id} Task timed out after {self.timeout}.00 seconds")

        duration_ms = (time.monotonic() - started) * 1000
        report = (
            f"REPORT RequestId: {inv.id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {self.max_memory_mb()} MB"
        )
        if init_ms is not None:
            report += f"\tInit Duration: {init_ms:.2f} ms"
        self.output.line(f"END RequestId: {inv.id}\n{report}")

        # Logs first, then the result: LocalStack attaches the logs it holds
        # when the result arrives.
        logs = self.output.take()
        self.localstack.post(f"/invocations/{inv.id}/logs", json.dumps({"logs": logs}).encode())
        kind, body = inv.result
        self.localstack.post(f"/invocations/{inv.id}/{kind}", body)
        with self.cv:
            self.current = None

    # --- Runtime API calls from the bootstrap --------------------------------

    def next_invocation(self) -> Invocation | None:
        """GET .../invocation/next: long-polls; the first call means "ready"."""
        with self.cv:
            generation = self.generation
            if self.init_ms is None and self.spawned_at:
                self.init_ms = (time.monotonic() - self.spawned_at) * 1000
            first = not self.ready_sent and not self.init_failed
            self.ready_sent = True
        if first:
            self.localstack.status("ready")
        with self.cv:
            while self.pending is None:
                if self.generation != generation or self.stopping.is_set():
                    return None
                self.cv.wait(1.0)
            inv, self.pending = self.pending, None
            inv.delivered = True
            return inv

    def complete(self, request_id: str, kind: str, body: bytes) -> bool:
        """POST .../invocation/<id>/response|error; False for an unknown id."""
        with self.cv:
            inv = self.current
            if inv is None or inv.id != request_id or not inv.delivered or inv.result:
                return False
            inv.result = (kind, body)
            self.cv.notify_all()
            return True

    def init_error(self, body: bytes) -> None:
        """POST .../init/error: the runtime could not initialise."""
        with self.cv:
            inv = self.current
            if inv is not None and inv.result is None:  # a re-init during an invoke
                inv.result = ("error", body)
                self.cv.notify_all()
                return
            report = not self.ready_sent and not self.init_failed
            self.init_failed = True
        if report:
            self.localstack.status("error", body)


def normalise_error(body: bytes, error_type: str | None) -> bytes:
    """An error body as LocalStack expects it: JSON with errorType/errorMessage."""
    try:
        error = json.loads(body)
    except ValueError:
        error = None
    if not isinstance(error, dict):
        error = {"errorMessage": body.decode("utf-8", "replace")}
    error.setdefault("errorType", error_type or "Unhandled")
    error.setdefault("errorMessage", "")
    return json.dumps(error).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every reply has a Content-Length
    # Headers and body leave in one write (flushed after each request), and
    # without Nagle: on a kept-alive connection, two small writes would wait
    # for the client's delayed ACK, adding ~40 ms to every call.
    wbufsize = -1
    disable_nagle_algorithm = True
    init: Init  # set on the class before serving

    def log_message(self, format, *args):  # silence per-request access logs
        pass

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != RUNTIME_PREFIX + "/invocation/next":
            return self.reply(404, error_json("NotFound", f"no route for GET {self.path}"))
        inv = self.init.next_invocation()
        if inv is None:  # superseded bootstrap or shutting down
            self.close_connection = True
            return self.reply(500, error_json("Runtime.Stopping", "runtime is stopping"))
        self.reply(
            200,
            inv.payload,
            {
                "Lambda-Runtime-Aws-Request-Id": inv.id,
                "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": inv.function_arn,
                "Lambda-Runtime-Trace-Id": inv.trace_id,
            },
        )

    def do_POST(self):
        body = self.read_body()
        path = self.path
        if path == "/invoke":  # from LocalStack: accept now, work afterwards
            inv = Invocation(json.loads(body))
            self.reply(200, b"OK")
            threading.Thread(target=self.init.run_invocation, args=(inv,), daemon=True).start()
        elif path == RUNTIME_PREFIX + "/init/error":
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            self.init.init_error(normalise_error(body, error_type or "Runtime.Unknown"))
            self.reply(202, b'{"status":"OK"}')
        elif path.startswith(RUNTIME_PREFIX + "/invocation/"):
            parts = path[len(RUNTIME_PREFIX + "/invocation/") :].split("/")
            if len(parts) != 2 or parts[1] not in ("response", "error"):
                return self.reply(404, error_json("NotFound", f"no route for POST {path}"))
            request_id, kind = parts
            if kind == "error":
                body = normalise_error(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
            if self.init.complete(request_id, kind, body):
                self.reply(202, b'{"status":"OK"}')
            else:
                self.reply(400, error_json("InvalidRequestID", "Invalid request ID"))
        else:
            self.reply(404, error_json("NotFound", f"no route for POST {path}"))


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A bootstrap killed mid-request (timeout, shutdown) is routine.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            log(f"error serving {client_address}:\n{traceback.format_exc()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-fd", type=int, required=True)
    args = parser.parse_args()
    parent = os.getppid()  # LocalStack

    listener = socket.socket(fileno=args.listen_fd)  # bound and listening already
    init = Init(port=listener.getsockname()[1])
    Handler.init = init
    server = Server(listener.getsockname(), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    threading.Thread(target=server.serve_forever, daemon=True).start()

    # The handler only records the signal: taking locks inside a signal
    # handler could deadlock against the interrupted main thread.
    signalled = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: signalled.append(True))

    problem = init.spawn()  # the init phase starts with the environment
    if problem:
        init.init_failed = True
        init.localstack.status("error", error_json("Runtime.InvalidEntrypoint", f"Error: {problem}"))
        return 1

    # Stay until told to stop, or until LocalStack itself is gone.
    while not (signalled or init.stopping.is_set()) and os.getppid() == parent:
        time.sleep(0.2)
    init.stopping.set()  # before the kill, so the exit is not reported as a crash
    init.kill_bootstrap(grace=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
