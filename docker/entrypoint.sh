#!/bin/sh
# One image, two runtimes. Lambda sets AWS_LAMBDA_RUNTIME_API: start the runtime client with the
# condvest handler (the container's command is ignored there). Anything else (AWS Batch, cron,
# docker run) passes the subcommand and its flags as the container command.
set -eu
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
    exec python -m awslambdaric condvest.aws.lambda_handler.handler
fi
exec condvest "$@"
