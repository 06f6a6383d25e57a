"""Entry point that LocalStack loads for ``LAMBDA_RUNTIME_EXECUTOR=process``.

LocalStack resolves executors with plux from the entry-point group
``localstack.lambda.runtime_executor``; the plugin's ``load()`` returns the
executor class. The import is deferred so that merely listing plugins stays
cheap, as in LocalStack's own ``DockerRuntimeExecutorPlugin``.
"""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "process"

    def load(self, *args, **kwargs):
        from sluice_localstack_executor.executor import ProcessRuntimeExecutor

        return ProcessRuntimeExecutor
