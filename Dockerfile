# syntax=docker/dockerfile:1
#
# ocpp-fleet: one image for every role (README.md, "Docker"):
#   ocpp-fleet run ...           a standalone fleet (metrics on :9100)
#   ocpp-fleet csms ...          the reference CSMS
#   locust --master / --worker   distributed load tests (locustfiles/ocpp_fleet.py)
#
# Two stages: the first builds a virtualenv with ocpp-fleet and its dependencies (all
# of them ship manylinux wheels, so no compiler is needed or installed), the second is
# a clean base image with only that virtualenv, the scenarios and the locustfiles.
#
# The base is pinned by tag (Python 3.11, Debian 12) in both FROM lines.  To pin it by
# digest as well, look the digest up with
# `docker buildx imagetools inspect python:3.11-slim-bookworm` and append
# @sha256:<digest> to both.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY emulator ./emulator
# locust is a main dependency, so the same image runs `locust --master` / `--worker`.
RUN python -m venv /opt/ocpp-fleet \
    && /opt/ocpp-fleet/bin/pip install --no-cache-dir . \
    && /opt/ocpp-fleet/bin/python -c "import uvloop, locust, emulator.cli, emulator.metrics.prometheus" \
    && /opt/ocpp-fleet/bin/python -m compileall -q /opt/ocpp-fleet/lib \
    && /opt/ocpp-fleet/bin/pip uninstall --yes pip

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="ocpp-fleet" \
      org.opencontainers.image.description="Fleets of emulated OCPP 1.6J wallboxes to load-test a CSMS" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric user.
RUN groupadd --system --gid 10001 fleet \
    && useradd --system --uid 10001 --gid fleet --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin fleet
COPY --from=build /opt/ocpp-fleet /opt/ocpp-fleet
WORKDIR /app
COPY scenarios ./scenarios
COPY locustfiles ./locustfiles
# Metrics on by default in the container, on all interfaces (--metrics-port/--metrics-host
# override these); no .pyc writes, so the root filesystem can be read-only.
ENV PATH=/opt/ocpp-fleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OCPP_FLEET_METRICS_PORT=9100 \
    OCPP_FLEET_METRICS_HOST=0.0.0.0
USER 10001:10001
# 9100 metrics, 8089 Locust web UI, 5557 Locust master, 9000 reference CSMS
EXPOSE 9100 8089 5557 9000
# Is the process serving?  The metrics endpoint by default; a role without one sets
# OCPP_FLEET_HEALTH_URL (e.g. http://127.0.0.1:9000/ for the CSMS, :8089/ for the web UI).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "emulator.healthcheck"]
CMD ["ocpp-fleet", "--help"]
