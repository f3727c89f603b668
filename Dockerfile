# One image, two runtimes (docs/deploy/README.md):
#   AWS Batch / cron / docker run: the container command is the condvest subcommand and flags,
#     e.g. `docker run condvest --lake s3://bucket/lake consolidate --dry-run`;
#   AWS Lambda: the entrypoint starts the runtime client when AWS_LAMBDA_RUNTIME_API is set.
# The base is an argument so the image builds without a registry (scripts/image-proof.sh passes
# a Debian base made with debootstrap). Any base with python3.11+ and its venv module works.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Wheels come from ./wheelhouse when it holds condvest's wheel (built on the host with
# `pip wheel '.[aws]' -w wheelhouse`, so the build needs no network), otherwise from PyPI.
# Every dependency ships manylinux wheels: no compiler is needed, and none reaches the final stage.
# The test suites and C headers of pandas/pyarrow/numpy (~70 MB) are dropped: never used at run time.
COPY . /src
RUN python3 -m venv /opt/condvest \
    && if ls /src/wheelhouse/condvest-*.whl >/dev/null 2>&1; then \
         /opt/condvest/bin/pip install --no-cache-dir --no-index --find-links /src/wheelhouse \
           "condvest[aws]"; \
       else \
         /opt/condvest/bin/pip install --no-cache-dir "/src[aws]"; \
       fi \
    && /opt/condvest/bin/pip uninstall --yes pip \
    && site=$(/opt/condvest/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))") \
    && rm -rf "$site/pandas/tests" "$site/pyarrow/tests" "$site/pyarrow/include" \
    && find "$site/numpy" -type d -name tests -prune -exec rm -rf {} + \
    && /opt/condvest/bin/python -c "import duckdb, numpy, pandas, pyarrow.parquet, condvest.aws.lambda_handler" \
    && /opt/condvest/bin/condvest --version \
    && /opt/condvest/bin/python -c "from condvest.core.calendar import get_calendar; \
get_calendar(cache_dir='/opt/condvest/cache')" \
    && ls /opt/condvest/cache/calendar-*.txt

FROM ${BASE_IMAGE}
COPY --from=build /opt/condvest /opt/condvest
COPY docker/entrypoint.sh /usr/local/bin/condvest-entrypoint
# A fixed non-root user for Batch and docker run (Lambda picks its own unprivileged user).
RUN useradd --system --uid 10001 --user-group --home-dir /home/condvest --create-home condvest \
    && mkdir -p /data \
    && chown condvest:condvest /data \
    && chmod 0755 /usr/local/bin/condvest-entrypoint
# No .pyc writes at run time (Lambda's file system is read-only outside /tmp). The calendar
# schedule was computed at build time into /opt/condvest/cache (docs/configuration.md): every
# cold start reads it instead of spending ~1.5 s recomputing it.
ENV PATH=/opt/condvest/bin:$PATH \
    CONDVEST_CALENDAR__CACHE_DIR=/opt/condvest/cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /data
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/condvest-entrypoint"]
CMD ["--help"]
