# syntax=docker/dockerfile:1
# The diffusion worker: torch + diffusers, one process per GPU (docs/batching.md).
#   docker build -f deploy/docker/worker.Dockerfile --target gpu -t llmga-worker:gpu .
#   docker build -f deploy/docker/worker.Dockerfile --target cpu -t llmga-worker:cpu .
# Models are never baked in: LLMGA_MODELS_DIR (tiny models, local copies) and HF_HOME
# (hub downloads of the sd15 profile) point into the /models volume. The one exception is
# the toy profile's trained weights (a few MB, package data of `toyworld`), installed into
# /models like the tiny builds.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu22.04
# uv installs a standalone CPython 3.11 on the CUDA base (Ubuntu ships no 3.11 build).
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.28@sha256:59240a65d6b57e6c507429b45f01b8f2c7c0bbeee0fb697c41a39c6a8e3a4cfb
ARG TORCH_VERSION=2.13.0
# The CUDA build of torch matching CUDA_IMAGE's major.minor (docs/deploy.md, "Images").
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu128

FROM ${UV_IMAGE} AS uv

# --- GPU: CUDA runtime base, CUDA torch ------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu-build
ARG TORCH_VERSION
ARG TORCH_CUDA_INDEX
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN uv python install 3.11.13 && uv venv --python 3.11.13 /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first, from the CUDA index (the lock leaves torch out), then the worker's lock,
# then the project without resolving again.
RUN uv pip install --index-url "${TORCH_CUDA_INDEX}" "torch==${TORCH_VERSION}"
COPY deploy/lock/worker.txt ./
RUN uv pip install -r worker.txt dumb-init==1.2.5
COPY pyproject.toml README.md ./
COPY services ./services
COPY toyworld ./toyworld
RUN uv pip install --no-deps .

FROM ${CUDA_IMAGE} AS gpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH HOME=/home/llmga \
    LLMGA_MODELS_DIR=/models HF_HOME=/models/hf LLMGA_WORKER_DEVICE=cuda \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=gpu-build /opt/python /opt/python
COPY --from=gpu-build /opt/venv /opt/venv
# /models exists and belongs to the worker user, so a fresh named volume inherits that.
RUN mkdir -p /models/hf /home/llmga && chown -R 10001:10001 /models /home/llmga
USER 10001:10001
WORKDIR /home/llmga
VOLUME ["/models"]
EXPOSE 9101
# The metrics server is up from the first second (before the models load): healthy means
# the process runs; "can take jobs" is the worker's heartbeat in Redis (gateway /readyz).
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9101/metrics', timeout=2)"]
# dumb-init forwards SIGTERM to the worker: Celery's warm shutdown finishes the running job.
ENTRYPOINT ["dumb-init", "--"]
CMD ["python", "-m", "services.worker"]

# --- CPU: the same worker with the CPU build of torch (tiny profile, `cpu` profile) ----
FROM ${PYTHON_IMAGE} AS cpu-build
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY deploy/lock/worker.txt ./
RUN pip install --no-cache-dir -r worker.txt dumb-init==1.2.5
COPY pyproject.toml README.md ./
COPY services ./services
COPY toyworld ./toyworld
# DL3013: `.` is this project; every dependency is pinned in the lock.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps . && pip check

FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH HOME=/home/llmga \
    LLMGA_MODELS_DIR=/models HF_HOME=/models/hf LLMGA_WORKER_DEVICE=cpu
COPY --from=cpu-build /opt/venv /opt/venv
RUN mkdir -p /models/hf /home/llmga && chown -R 10001:10001 /models /home/llmga
USER 10001:10001
WORKDIR /home/llmga
VOLUME ["/models"]
EXPOSE 9101
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9101/metrics', timeout=2)"]
ENTRYPOINT ["dumb-init", "--"]
CMD ["python", "-m", "services.worker"]
