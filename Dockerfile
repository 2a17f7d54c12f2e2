# syntax=docker/dockerfile:1
# One image, two processes:
#   docker build -t metasignal:0.1.0 .
#   docker run --rm -e METASIGNAL_BOOTSTRAP=kafka:9092 -e METASIGNAL_SIGNING_KEY=... metasignal:0.1.0
#   docker run ... metasignal:0.1.0 trainer
# Settings are METASIGNAL_* environment variables (README, "Configuration reference").
# /metrics, /healthz and /readyz listen on METASIGNAL_METRICS_PORT (9108 in this image).

# -- build: a virtualenv with the pinned runtime dependencies and the project wheel ---------------
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/metasignal \
    && python -m venv /opt/build
# Dependencies first: this layer is reused until requirements.lock changes. Wheels only, no
# compiler in the image; --no-deps: the lock is the whole closure (make lock regenerates it).
# The lock includes the `confluent` extra (confluent-kafka, librdkafka inside its wheel), so
# METASIGNAL_KAFKA_CLIENT=confluent works in the image; kafka-python stays the default client.
COPY requirements.lock deploy/build-requirements.txt ./
RUN /opt/metasignal/bin/pip install --no-deps --only-binary=:all: -r requirements.lock \
    && /opt/build/bin/pip install --no-deps -r build-requirements.txt
COPY pyproject.toml README.md ./
COPY metasignal/ metasignal/
COPY stream/ stream/
COPY trainer/ trainer/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/metasignal/bin/pip install --no-deps /wheels/metasignal-*.whl \
    && /opt/metasignal/bin/pip check

# -- runtime: the virtualenv on a clean base, as an unprivileged user ------------------------------
FROM python:3.11.13-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="metasignal" \
      org.opencontainers.image.description="Streaming trade-signal service: scorer and trainer" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/metasignal/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    METASIGNAL_METRICS_PORT=9108
RUN groupadd --system --gid 10001 metasignal \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin metasignal
COPY --from=build /opt/metasignal /opt/metasignal
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /tmp
EXPOSE 9108
# Liveness of either process: /healthz answers 200 while its loop is alive (503 when stalled).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('METASIGNAL_METRICS_PORT', '9108'), timeout=4)"]
ENTRYPOINT ["metasignal"]
CMD ["scorer"]
