"""LocalStack Lambda executor that runs functions as host processes.

LocalStack's stock ``docker`` executor starts one container per execution
environment, with LocalStack's Go ``lambda-runtime-init`` inside it. This
package replaces both halves for machines without a Docker engine:

- ``plugin``: the entry point LocalStack discovers (``process``).
- ``executor``: the LocalStack-side ``RuntimeExecutor``; starts and stops one
  init process per execution environment.
- ``runtime_init``: the init process itself (stdlib only, run with
  ``python -I``); serves the Lambda Runtime API to the function's
  ``bootstrap`` and reports results and logs back to LocalStack.

Only OS-only runtimes (``provided.al2023``, ``provided.al2``) can work, and the
bootstrap must be built for this host: architecture settings are ignored.
"""
