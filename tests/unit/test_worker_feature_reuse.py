"""DeepCache-style feature reuse (services/worker/feature_reuse.py) on the tiny SD 1.5
pipeline on CPU: the deep blocks really run only on every `interval`-th step, each
generation starts with a full step, and the image stays close to the exact one. The PSNR
printed (pytest -s) is the quality figure docs/worker.md quotes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from services.worker.loading import LoadedModels, load_models
from services.worker.optimisations import Optimisations
from services.worker.pipelines.common import decode_latents, image_generator
from services.worker.profiles import get_profile
from tests.support.tiny_sd15 import tiny_sd15_models_dir
from tests.support.torch_threads import one_torch_thread

CPU = torch.device("cpu")
PROFILE = get_profile("tiny")
STEPS = 20
INTERVAL = 3


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models_dir() -> Path:
    return tiny_sd15_models_dir()


def generate(models: LoadedModels, seed: int) -> np.ndarray:
    pipeline = models.text_to_image
    generator = image_generator(seed)
    with torch.no_grad():
        latents = pipeline(
            prompt="a lighthouse on a cliff at dusk",
            width=128,
            height=128,
            num_inference_steps=STEPS,
            guidance_scale=7.5,
            generator=generator,
            output_type="latent",
        ).images
        (image,) = decode_latents(pipeline, latents, generator)
    return np.asarray(image, dtype=np.float64) / 255


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a - b) ** 2)))


def test_reuse_skips_deep_blocks_and_keeps_the_image_close(models_dir: Path) -> None:
    exact = load_models(PROFILE, models_dir, CPU, torch.float32, optimisations=Optimisations())
    reusing = load_models(
        PROFILE,
        models_dir,
        CPU,
        torch.float32,
        optimisations=Optimisations(feature_reuse_interval=INTERVAL),
    )
    # A layer inside the middle block runs only when the block really computes.
    deep_layer = reusing.text_to_image.unet.mid_block.resnets[0]
    calls = 0

    def count(*_: object) -> None:
        nonlocal calls
        calls += 1

    deep_layer.register_forward_hook(count)

    scores = []
    for seed in (1, 2):
        calls = 0
        reference, approximate = generate(exact, seed), generate(reusing, seed)
        # PNDM runs STEPS + 1 UNet calls; a full one every INTERVAL-th, from the first.
        evaluations = exact.text_to_image.scheduler.timesteps.numel()
        assert calls == -(-evaluations // INTERVAL)
        scores.append(psnr(reference, approximate))
    print(f"\nfeature reuse every {INTERVAL} steps, {STEPS} steps: PSNR {scores} dB vs exact")
    assert all(15 < score < 60 for score in scores)  # close, and not the exact image
