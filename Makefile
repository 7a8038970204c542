# One entry point for people and CI. Everything installs into .venv from the package
# registries; models are built locally (nothing is fetched from a model hub).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Every dependency, transitive ones too, at the version the suite passed with: one lock
# for the tested set (all extras) and one per service image (deploy/lock/README.md).
LOCK := deploy/lock/dev.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml clients/python/pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
MODELS_DIR ?= $(HOME)/.cache/llmga/models
MLLM_CACHE_DIR ?= $(HOME)/.cache/llmga/mllm
export LLMGA_MODELS_DIR ?= $(MODELS_DIR)
export LLMGA_MLLM_CACHE_DIR ?= $(MLLM_CACHE_DIR)
PROTOS := $(wildcard proto/llmga/v1/*.proto)

.PHONY: install lock models run toy-train toy-judge toy-vae toy-text-encoder toy-t2i toy-t2i-truncated toy-inpaint toy-controlnet \
    toy-diffrir eval test test-unit test-deploy lint proto bench bench-gateway bench-edit \
    bench-gpu bench-fairness load clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml clients/python/pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU build; nothing may pull a CUDA build into CI.
	$(PY) -m pip install --quiet torch==2.13.0
	# The lock, then the project itself without resolving anything again.
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	# The Python SDK, its own distribution (llmga-client); its dependencies are in the lock.
	$(PY) -m pip install --quiet --no-deps -e clients/python
	$(PY) -m pip check
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv with every service and the dev tools, from the lock

# The same resolution for every file: the service locks are constrained by the dev lock,
# so a package has one version everywhere. torch is left out (the CPU build here, the CUDA
# build in the GPU images: each installs its own, pinned in pyproject.toml), its own
# dependencies are in.
# Where the CPU torch wheel lies (its metadata has no CUDA packages, PyPI's has).
TORCH_WHEELS ?= /opt/wheels
UV_COMPILE := $(VENV)/bin/uv pip compile pyproject.toml --quiet --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --no-emit-package torch \
	--find-links $(TORCH_WHEELS) --custom-compile-command 'make lock'
lock:  ## re-resolve deploy/lock/*.txt from pyproject.toml (UPGRADE=1: newest versions that fit)
	@test -x $(VENV)/bin/uv || (echo "run make install first (uv comes with the dev tools)"; exit 1)
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) --extra gateway --extra worker --extra mllm --extra dev -o $(LOCK)
	for extra in gateway worker mllm; do \
		$(UV_COMPILE) --extra $$extra -c $(LOCK) -o deploy/lock/$$extra.txt || exit 1; \
	done

models: install  ## build the tiny diffusion models and convert the local MLLM once
	$(PY) -m services.worker.testing.tiny_models --all --toy --models-dir $(LLMGA_MODELS_DIR)
	$(PY) -m services.mllm.prepare

run: models  ## start mllm, worker and gateway locally (gateway on http://127.0.0.1:8000)
	$(PY) deploy/local/stack.py

# The toy world's models (docs/toy-world.md): each step resumes where it stopped; the last
# writes fp16 weights into toyworld/weights (committed, so `make run` needs none of this).
TOY_RUNS ?= .toy-train
TOY_T2I_STEPS ?= 5000
TOY_STAGE2_STEPS ?= 500
toy-judge: install  ## train the toy world's judge (toyworld/weights/judge.safetensors)
	$(PY) -m toyworld.judge --steps 6000 --batch-size 32
toy-vae: install  ## train the toy VAE (objects weighted, latents anchored to the image)
	$(PY) -m training.vae --output $(TOY_RUNS)/vae --steps 2000 --batch-size 16
toy-text-encoder: install  ## pretrain the toy text encoder to read scenes from captions (the toy CLIP)
	$(PY) -m training.text_encoder --output $(TOY_RUNS)/text-encoder --steps 5000 --lr 2e-3
# Text-to-image in LLMGA's two stages: a base UNet on short captions (SD's pretraining),
# then fine-tuned on detailed captions in 75-token chunks (stage 2); the truncated
# fine-tune is the long-prompt claim's ablation (docs/toy-world.md).
toy-t2i: toy-vae toy-text-encoder  ## train the toy text-to-image UNet: base, then detailed captions
	$(PY) -m training.text_to_image --toy --vae $(TOY_RUNS)/vae/vae \
		--text-encoder $(TOY_RUNS)/text-encoder --output $(TOY_RUNS)/t2i-base \
		--steps $(TOY_T2I_STEPS) --lr 1e-3 --detailed-share 0
	$(PY) -m training.text_to_image --pretrained $(TOY_RUNS)/t2i-base/pipeline \
		--output $(TOY_RUNS)/t2i --steps $(TOY_STAGE2_STEPS) --lr 5e-4 --detailed-share 0.7
toy-t2i-truncated: toy-t2i  ## the ablation: stage 2 with 77-token truncation instead of chunks
	$(PY) -m training.text_to_image --pretrained $(TOY_RUNS)/t2i-base/pipeline --truncate \
		--output $(TOY_RUNS)/t2i-truncated --steps $(TOY_STAGE2_STEPS) --lr 5e-4 --detailed-share 0.7
toy-inpaint: toy-t2i  ## train the toy 9-channel inpainting UNet (irregular, box, border masks)
	$(PY) -m training.inpainting --t2i $(TOY_RUNS)/t2i-base/pipeline --output $(TOY_RUNS)/inpaint --steps 1500
toy-controlnet: toy-t2i  ## train the toy canny ControlNet
	$(PY) -m training.controlnet --t2i $(TOY_RUNS)/t2i-base/pipeline --output $(TOY_RUNS)/controlnet --steps 800
toy-diffrir: install  ## DiffRIR (tiny config) on toy scenes, with and without the colour degradation
	$(PY) -m toyworld.scenes --out $(TOY_RUNS)/scenes --count 2000
	$(PY) -m services.worker.diffrir.train --images $(TOY_RUNS)/scenes --tiny --crop 64 \
		--batch-size 8 --steps 4000 --output $(TOY_RUNS)/diffrir-colour.pth
	$(PY) -m services.worker.diffrir.train --images $(TOY_RUNS)/scenes --tiny --crop 64 \
		--batch-size 8 --steps 4000 --no-colour --output $(TOY_RUNS)/diffrir-nocolour.pth
toy-train: toy-judge toy-t2i-truncated toy-inpaint toy-controlnet toy-diffrir  ## train every toy model, export fp16 weights
	$(PY) -m training.export --runs $(TOY_RUNS)

EVAL_ARGS ?= --base-url http://127.0.0.1:8000 --out eval-report --count 100
eval: install  ## run the evaluation protocols against a running stack (make run), write eval-report/
	$(PY) -m evaluation $(EVAL_ARGS)

test: install  ## run the whole test suite (needs Redis on 127.0.0.1:6379)
	$(PY) -m pytest -q

test-unit: install  ## unit tests only
	$(PY) -m pytest -q tests/unit

test-deploy: install  ## lint the Dockerfiles, validate compose and every Kubernetes overlay
	$(PY) -m pytest -q tests/unit/test_deploy_dockerfiles.py tests/unit/test_deploy_compose.py \
		tests/unit/test_deploy_k8s.py

lint: install  ## ruff and mypy
	$(VENV)/bin/ruff check services tests deploy benchmarks clients/python toyworld training evaluation
	$(VENV)/bin/ruff format --check services tests deploy benchmarks clients/python toyworld training evaluation
	$(VENV)/bin/mypy services deploy benchmarks tests toyworld training evaluation
	# The SDK on its own terms: strict, as a package people type-check their code against.
	$(VENV)/bin/mypy --strict clients/python/llmga_client

bench: models  ## serving overhead vs. in-process baselines, batching across jobs, the gateway alone
	$(PY) -m benchmarks.bench_serving
	$(PY) -m benchmarks.bench_batching
	$(PY) -m benchmarks.bench_gateway

# No models needed. wrk is installed with apt-get when missing (as root), else explained.
BENCH_GATEWAY_ARGS ?=
bench-gateway: install  ## gateway submit throughput (wrk) vs. a bare app; reads under slow chats
	$(PY) -m benchmarks.bench_gateway $(BENCH_GATEWAY_ARGS)

# CUDA: SD 1.5 512² x 25 steps and SDXL 1024² x 20 steps at full size (random weights) vs
# stock diffusers; without CUDA the CPU mode (tiny models, SD 1.5 at 64²). benchmarks/README.md
BENCH_GPU_ARGS ?=
bench-gpu: install  ## images/s, latency, peak memory, MFU at batch 1-16 vs diffusers (CPU mode without CUDA)
	$(PY) -m benchmarks.bench_gpu $(BENCH_GPU_ARGS)

bench-fairness: models  ## tenant B's wait behind tenant A's backlog, with and without the per-tenant cap
	$(PY) -m benchmarks.bench_fairness

bench-edit: models  ## the two editing methods compared on the tiny model (docs/worker.md)
	$(PY) -m benchmarks.edit_comparison

.PHONY: bench-beyond-clip
bench-beyond-clip: install  ## Beyond CLIP's Table 1 ablation in the toy world (docs/beyond-clip.md)
	$(PY) -m benchmarks.beyond_clip_table

LOAD_ARGS ?= --users 4 --duration 30
load: models  ## load test: concurrent users chat and generate; throughput, p50/p99, lost jobs
	$(PY) -m benchmarks.load $(LOAD_ARGS)

proto: install  ## regenerate services/common/proto from proto/
	$(PY) -m grpc_tools.protoc -Iproto --python_out=services/common/proto \
		--pyi_out=services/common/proto $(PROTOS)

clean:  ## remove the venv and caches (models in ~/.cache/llmga stay)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
