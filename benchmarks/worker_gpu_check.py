"""GPU check of the worker's diffusion path (run on a CUDA machine; CI has none).

Builds the tiny SD 1.5 models, loads them with the worker's own loader on cuda/fp16, and
checks what must hold on a GPU too: a short prompt encodes exactly as the stock pipeline,
a long prompt is chunked, and a t2i job gives images of the requested size with the same
seed twice giving the same pixels. Prints the per-job time on GPU against CPU fp32
measured in the same run.

    python -m benchmarks.worker_gpu_check
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from PIL import Image

from services.common.contract import GenerationRequest, Task
from services.worker.loading import LoadedModels, load_models
from services.worker.pipelines.text_to_image import resolve_params, run_text_to_image
from services.worker.profiles import get_profile
from services.worker.prompt_encoding import encode_long_prompt
from services.worker.testing.tiny_models import build_tiny_sd15

SHORT = "a husky astronaut floating above the earth"
LONG = " ".join(["a detailed watercolor of a quiet harbor with small fishing boats"] * 20)


def time_job(
    models: LoadedModels, request: GenerationRequest, repeats: int = 3
) -> tuple[float, list[Image.Image]]:
    """Mean seconds of one job (after a warm-up run) and the images of the last run."""
    params = resolve_params(request, models.profile)
    run_text_to_image(models.text_to_image, params)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        result = run_text_to_image(models.text_to_image, params)
    return (time.perf_counter() - started) / repeats, result.images


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    models_dir = Path(tempfile.mkdtemp())
    build_tiny_sd15(models_dir / "tiny-sd15")
    profile = get_profile("tiny")
    gpu = load_models(profile, models_dir, torch.device("cuda"), torch.float16)
    cpu = load_models(profile, models_dir, torch.device("cpu"), torch.float32)
    pipe = gpu.text_to_image
    assert isinstance(pipe, StableDiffusionPipeline), "the tiny profile is SD 1.5"

    stock, _ = pipe.encode_prompt(SHORT, pipe.device, 1, False)
    ours = encode_long_prompt(pipe.tokenizer, pipe.text_encoder, SHORT, "", pipe.device, False)
    assert torch.equal(ours.prompt_embeds, stock), "short prompt differs from stock on cuda"
    long = encode_long_prompt(pipe.tokenizer, pipe.text_encoder, LONG, "", pipe.device, True)
    assert long.negative_prompt_embeds is not None
    assert long.prompt_embeds.shape == long.negative_prompt_embeds.shape
    print(f"encoding ok on cuda: long prompt {long.prompt_tokens} tokens, {long.chunks} chunks")

    request = GenerationRequest(
        job_id="gpu-check",
        tenant="t",
        task=Task.TASK_T2I,
        prompt=LONG,
        width=256,
        height=256,
        steps=20,
        seed=3,
        n=2,
    )
    gpu_s, images = time_job(gpu, request)
    _, again = time_job(gpu, request, repeats=1)
    assert [im.size for im in images] == [(256, 256)] * 2
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again, strict=True)
    )
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))
    cpu_s, _ = time_job(cpu, request, repeats=1)
    print(
        f"t2i 256x256, 20 steps, n=2: cuda fp16 {gpu_s * 1000:.0f} ms, "
        f"cpu fp32 {cpu_s * 1000:.0f} ms, speed-up x{cpu_s / gpu_s:.1f}"
    )
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
