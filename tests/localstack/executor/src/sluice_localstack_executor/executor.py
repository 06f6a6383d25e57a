"""LocalStack side of the process executor: one init process per environment.

For every execution environment LocalStack creates a ``ProcessRuntimeExecutor``
and calls ``start(env)``. Where the Docker executor would create a container
running LocalStack's Go init, this class spawns ``runtime_init.py`` as a local
child process, in its own process group, with the unpacked code directory as
its working directory. It listens on a socket bound here and handed over, so
the address is known before the child runs and nothing can race for the port.

Everything that happens after start-up (``/invoke``, the ready/error status,
per-invocation logs and results) goes through LocalStack's own
``ExecutorEndpoint``, exactly as with the Docker executor.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import (
    ExecutorEndpoint,
    ShutdownDuringStartup,
)
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)
from localstack.utils.strings import truncate

LOG = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
INIT_SCRIPT = Path(__file__).with_name("runtime_init.py")
# Grace period between SIGTERM and SIGKILL when stopping an environment.
STOP_GRACE_SECONDS = 3.0
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class ProcessRuntimeExecutor(RuntimeExecutor):
    executor_endpoint: ExecutorEndpoint
    process: subprocess.Popen | None

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = ExecutorEndpoint(self.id)
        self.process = None

    def start(self, env_vars: dict[str, str]) -> None:
        config_ = self.function_version.config
        if config_.package_type != PackageType.Zip or not config_.code:
            raise LambdaRuntimeException(
                "The process executor runs zip-packaged functions only (no container images)"
            )
        code_dir = config_.code.get_unzipped_code_location()

        # 1. Register the callback routes (status, logs, results) for this id.
        self.executor_endpoint.start()

        # 2. Bind the socket the init will serve on, before spawning it.
        listener = socket.create_server((LOOPBACK, 0))
        port = listener.getsockname()[1]

        # 3. Spawn the init. Its environment is LocalStack's variables for the
        #    function plus PATH and LANG, never the host environment.
        env = {key: str(value) for key, value in env_vars.items()}
        env["LAMBDA_TASK_ROOT"] = str(code_dir)
        env["PATH"] = os.environ.get("PATH") or DEFAULT_PATH
        env["LANG"] = os.environ.get("LANG") or "C.UTF-8"
        try:
            self.process = subprocess.Popen(
                # -I: a function's PYTHONPATH etc. cannot break the init.
                [sys.executable, "-I", str(INIT_SCRIPT), "--listen-fd", str(listener.fileno())],
                cwd=code_dir,
                env=env,
                pass_fds=[listener.fileno()],
                stdin=subprocess.DEVNULL,
                # stdout/stderr are inherited: init diagnostics land in LocalStack's log.
                start_new_session=True,
            )
        finally:
            listener.close()  # the child holds its own copy

        # 4. Tell LocalStack where to POST /invoke.
        self.executor_endpoint.container_address = LOOPBACK
        self.executor_endpoint.container_port = port
        LOG.debug("Started init pid %s for %s on port %s", self.process.pid, self.id, port)

        # 5. Wait for status/ready (or status/error), failing fast if the init dies.
        self._wait_for_startup()

    def _wait_for_startup(self) -> None:
        future = self.executor_endpoint.startup_future
        while True:
            try:
                # Raises StatusErrorException if the init reported status/error.
                future.result(timeout=0.1)
                return
            except FutureTimeout:
                pass
            except CancelledError as e:
                raise ShutdownDuringStartup(
                    "Executor environment shutdown during process startup"
                ) from e
            returncode = self.process.poll()
            if returncode is not None and not future.done():
                raise LambdaRuntimeException(
                    f"Lambda init process for {self.function_version.qualified_arn} exited "
                    f"with code {returncode} before the runtime was ready"
                )

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)  # the init stops its bootstrap
                process.wait(STOP_GRACE_SECONDS)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                LOG.debug("Init %s ignored SIGTERM, killing it", process.pid)
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        try:
            self.executor_endpoint.shutdown()
        except Exception as e:
            LOG.debug("Error while stopping executor endpoint for %s: %s", self.id, e)

    def get_address(self) -> str:
        return LOOPBACK

    def get_endpoint_from_executor(self) -> str:
        # The function runs on this host, so it reaches LocalStack on loopback.
        return LOOPBACK

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{LOOPBACK}:{port}{self.executor_endpoint.get_endpoint_prefix()}"

    def invoke(self, payload: dict[str, str]):
        LOG.debug(
            "Sending invoke-payload '%s' to executor '%s'",
            truncate(str(payload), config.LAMBDA_TRUNCATE_STDOUT),
            self.id,
        )
        return self.executor_endpoint.invoke(payload)

    def get_logs(self) -> str:
        # The function's output is attached to each invocation; the init's own
        # diagnostics go to LocalStack's log. There is no container log to read.
        return "(process executor: see the invocation logs and LocalStack's own log)"

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        # Only unpack the code: there is no runtime client to fetch and no image to pull.
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()
        if function_version.config.layers:
            LOG.warning(
                "Process executor: layers of %s are ignored", function_version.qualified_arn
            )

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass
