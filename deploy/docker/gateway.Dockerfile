# syntax=docker/dockerfile:1
# The gateway: FastAPI + Celery client, no torch, diffusers or transformers.
#   docker build -f deploy/docker/gateway.Dockerfile -t llmga-gateway .
# Base pinned by tag (python 3.11 patch release + Debian release); pin the digest too in
# your registry mirror (docs/deploy.md, "Images").
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies from the gateway's lock first (a layer that survives code changes), then the
# project without resolving again. dumb-init as PID 1 forwards SIGTERM to the server (a
# bare Python PID 1 ignores it until a handler is installed).
COPY deploy/lock/gateway.txt ./
RUN pip install --no-cache-dir -r gateway.txt dumb-init==1.2.5
COPY pyproject.toml README.md ./
COPY services ./services
# DL3013: `.` is this project; every dependency is pinned in the lock.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps . && pip check

FROM ${PYTHON_IMAGE} AS gateway
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH HOME=/home/llmga \
    LLMGA_GATEWAY_HOST=0.0.0.0 LLMGA_GATEWAY_PORT=8000
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/llmga
EXPOSE 8000
# Liveness only (/healthz does no I/O); /readyz also needs Redis, the mllm and a worker.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["dumb-init", "--"]
CMD ["python", "-m", "services.gateway"]
