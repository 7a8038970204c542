"""The worker's GPU path settings (services/worker/optimisations.py) on the tiny SD 1.5
pipeline on CPU: each one takes effect on the modules and leaves the image as it was (the
exact-arithmetic ones within float32 rounding, bfloat16 within a stated PSNR).

torch.compile is exercised with the `eager` backend (Dynamo traces the UNet, no kernels
are generated): the code path and the warm-up are the worker's, at a fraction of
Inductor's compile time on a small CPU. Inductor itself runs in `make bench-gpu`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import (
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
)

from services.worker.loading import LoadedModels, load_models
from services.worker.optimisations import Optimisations, warm_up
from services.worker.pipelines.common import decode_latents, image_generator
from services.worker.profiles import get_profile
from services.worker.settings import WorkerSettings
from tests.support.tiny_sd15 import tiny_sd15_models_dir
from tests.support.torch_threads import one_torch_thread

CPU = torch.device("cpu")
PROFILE = get_profile("tiny")
SIZE = 64
STEPS = 2


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models_dir() -> Path:
    return tiny_sd15_models_dir()


def load(
    models_dir: Path, options: Optimisations, dtype: torch.dtype = torch.float32
) -> LoadedModels:
    return load_models(PROFILE, models_dir, CPU, dtype, optimisations=options)


def generate(models: LoadedModels) -> np.ndarray:
    """One seeded image as float pixels in [0, 1]."""
    pipeline = models.text_to_image
    generator = image_generator(7)
    with torch.no_grad():
        latents = pipeline(
            prompt="a red fox in the snow",
            width=SIZE,
            height=SIZE,
            num_inference_steps=STEPS,
            guidance_scale=7.5,
            generator=generator,
            output_type="latent",
        ).images
        (image,) = decode_latents(pipeline, latents, generator)
    return np.asarray(image, dtype=np.float64) / 255


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


@pytest.fixture(scope="module")
def reference(models_dir: Path) -> np.ndarray:
    """The image with no setting but the default SDPA attention."""
    return generate(load(models_dir, Optimisations()))


def test_defaults_resolve_per_device() -> None:
    settings = WorkerSettings()
    on_cpu = Optimisations.from_settings(settings, CPU)
    on_gpu = Optimisations.from_settings(settings, torch.device("cuda"))
    assert on_cpu == Optimisations(attention="sdpa", channels_last=False)
    assert on_gpu.channels_last and not on_gpu.compile_unet and not on_gpu.fuse_qkv


def test_eager_attention_gives_the_same_image(models_dir: Path, reference: np.ndarray) -> None:
    models = load(models_dir, Optimisations(attention="eager"))
    processors = models.text_to_image.unet.attn_processors.values()
    assert processors and all(type(p) is AttnProcessor for p in processors)
    assert np.abs(generate(models) - reference).max() <= 2 / 255


def test_sdpa_is_set_on_unet_and_vae(models_dir: Path) -> None:
    models = load(models_dir, Optimisations(attention="sdpa"))
    for module in (models.text_to_image.unet, models.text_to_image.vae):
        assert all(type(p) is AttnProcessor2_0 for p in module.attn_processors.values())


def test_channels_last_gives_the_same_image(models_dir: Path, reference: np.ndarray) -> None:
    models = load(models_dir, Optimisations(channels_last=True))
    conv = models.text_to_image.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert np.abs(generate(models) - reference).max() <= 2 / 255


def test_fused_qkv_gives_the_same_image(models_dir: Path, reference: np.ndarray) -> None:
    models = load(models_dir, Optimisations(fuse_qkv=True))
    unet = models.text_to_image.unet
    processors = unet.attn_processors.values()
    assert all(type(p) is FusedAttnProcessor2_0 for p in processors)
    assert np.abs(generate(models) - reference).max() <= 2 / 255


def test_bfloat16_weights_and_a_float32_vae(models_dir: Path, reference: np.ndarray) -> None:
    models = load(models_dir, Optimisations(vae_dtype=torch.float32), dtype=torch.bfloat16)
    assert models.text_to_image.unet.dtype == torch.bfloat16
    assert models.text_to_image.vae.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: close to the float32 image, not equal.
    assert psnr(generate(models), reference) > 25


def test_compiled_unet_warms_up_and_gives_the_same_image(
    models_dir: Path, reference: np.ndarray
) -> None:
    models = load(models_dir, Optimisations(compile_unet=True, compile_backend="eager"))
    unet = models.text_to_image.unet
    assert unet._compiled_call_impl is not None  # nn.Module.compile: compiled in place
    assert warm_up(models.text_to_image, SIZE, SIZE, PROFILE.guidance_scale) > 0
    assert np.abs(generate(models) - reference).max() <= 2 / 255
