"""The tiny SDXL profile, in process: it loads like a real SDXL checkpoint, long prompts go
through both text encoders untruncated (and short ones exactly as diffusers encodes them),
and text-to-image, inpainting and outpainting run on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_inpaint import (
    StableDiffusionXLInpaintPipeline,
)
from PIL import Image
from transformers import CLIPTextModelWithProjection

from services.common.contract import GenerationRequest, Outpaint, Task
from services.worker.loading import LoadedModels, load_models
from services.worker.pipelines.inpainting import params_for_mask_image, run_inpainting
from services.worker.pipelines.outpainting import resolve_outpaint_params
from services.worker.pipelines.text_to_image import resolve_params, run_text_to_image
from services.worker.profiles import get_profile
from services.worker.prompt_encoding import encode_long_prompt_sdxl, tokenize_untruncated
from services.worker.task_table import model_revision
from services.worker.testing.tiny_models import CORPUS, build_profile_models

CPU = torch.device("cpu")
PROFILE = get_profile("tiny-sdxl")
WORDS = sorted(set(CORPUS.lower().replace(",", " ").replace(".", " ").split()))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models_dir = tmp_path_factory.mktemp("models")
    build_profile_models(PROFILE, models_dir)
    return models_dir


@pytest.fixture(scope="module")
def models(models_dir: Path) -> Iterator[LoadedModels]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small shared CPUs: one thread is much faster than two fighting
    yield load_models(PROFILE, models_dir, CPU, torch.float32, components={"inpainting"})
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def t2i(models: LoadedModels) -> StableDiffusionXLPipeline:
    assert isinstance(models.text_to_image, StableDiffusionXLPipeline)
    return models.text_to_image


def encode(pipeline: Any, prompt: str, negative: str = "", guidance: bool = True) -> Any:
    return encode_long_prompt_sdxl(
        (pipeline.tokenizer, pipeline.tokenizer_2),
        (pipeline.text_encoder, pipeline.text_encoder_2),
        prompt,
        negative,
        CPU,
        do_classifier_free_guidance=guidance,
        zero_empty_negative=pipeline.config.force_zeros_for_empty_prompt,
    )


def prompt_of(pipeline: Any, num_tokens: int, seed: int = 0) -> str:
    """A prompt of exactly `num_tokens` tokens (single-token words from the corpus)."""
    singles = [w for w in WORDS if len(pipeline.tokenizer.tokenize(w)) == 1]
    text = " ".join(singles[(seed + 7 * i) % len(singles)] for i in range(num_tokens))
    assert len(tokenize_untruncated(pipeline.tokenizer, text)) == num_tokens
    return text


def test_tiny_sdxl_loads_like_an_sdxl_checkpoint(models: LoadedModels) -> None:
    t2i, inpainting = models.text_to_image, models.inpainting
    assert isinstance(t2i, StableDiffusionXLPipeline)
    assert isinstance(inpainting, StableDiffusionXLInpaintPipeline)
    assert isinstance(t2i.text_encoder_2, CLIPTextModelWithProjection)
    assert t2i.unet.config.addition_embed_type == "text_time"
    assert t2i.unet.config.cross_attention_dim == (
        t2i.text_encoder.config.hidden_size + t2i.text_encoder_2.config.hidden_size
    )
    assert t2i.unet.config.in_channels == 4 and inpainting.unet.config.in_channels == 9
    assert t2i.tokenizer_2.pad_token == "!"  # as SDXL's second tokenizer
    assert models.revision.startswith("tiny-")
    inpaint = GenerationRequest(task=Task.TASK_INPAINT)
    assert model_revision(models, inpaint) == models.inpainting_revision != models.revision


@pytest.mark.parametrize("num_tokens", [0, 40, 75])
@pytest.mark.parametrize("negative", ["", "ugly, blurry"])
def test_short_prompts_encode_exactly_as_the_stock_sdxl_pipeline(
    t2i: StableDiffusionXLPipeline, num_tokens: int, negative: str
) -> None:
    prompt = prompt_of(t2i, num_tokens)
    # The stock pipeline zeroes the negative when none is given (force_zeros_for_empty_prompt).
    stock = t2i.encode_prompt(prompt, None, CPU, 1, True, negative or None)
    ours = encode(t2i, prompt, negative)
    assert ours.chunks == 1 and ours.prompt_tokens == num_tokens
    kwargs = ours.pipeline_kwargs()
    names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds"]
    names.append("negative_pooled_prompt_embeds")
    for name, expected in zip(names, stock, strict=True):
        assert torch.equal(kwargs[name], expected), name
    if not negative:
        assert not kwargs["negative_prompt_embeds"].any()


def test_a_200_token_prompt_is_three_chunks_through_both_encoders(
    t2i: StableDiffusionXLPipeline,
) -> None:
    prompt = prompt_of(t2i, 200)
    encoded = encode(t2i, prompt, "blurry")
    assert encoded.prompt_tokens == 200 and encoded.chunks == 3
    assert encoded.prompt_embeds.shape == (1, 3 * 77, 32 + 64)  # both encoders' features
    assert encoded.negative_prompt_embeds.shape == encoded.prompt_embeds.shape
    # The first chunk, features and pooled embedding, is the stock encoding of the first 75
    # tokens; the later chunks carry the rest.
    head = t2i.tokenizer.decode(tokenize_untruncated(t2i.tokenizer, prompt)[:75])
    stock, _, stock_pooled, _ = t2i.encode_prompt(head, None, CPU, 1, False)
    assert torch.equal(encoded.prompt_embeds[:, :77], stock)
    assert torch.equal(encoded.pooled_prompt_embeds, stock_pooled)
    words = prompt.split()
    words[180] = next(w for w in (words[0], words[1]) if w != words[180])
    changed = encode(t2i, " ".join(words), "blurry").prompt_embeds
    assert torch.equal(changed[:, :154], encoded.prompt_embeds[:, :154])
    assert not torch.equal(changed[:, 154:], encoded.prompt_embeds[:, 154:])


def test_a_long_prompt_reaches_the_unet_untruncated(t2i: StableDiffusionXLPipeline) -> None:
    seen: list[torch.Size] = []
    hook = t2i.unet.register_forward_pre_hook(
        lambda _module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].shape),
        with_kwargs=True,
    )
    try:
        request = GenerationRequest(prompt=prompt_of(t2i, 200), width=64, height=64, steps=2)
        request.seed = 3
        result = run_text_to_image(t2i, resolve_params(request, PROFILE))
    finally:
        hook.remove()
    assert result.chunks == 3 and result.prompt_tokens == 200
    # Classifier-free guidance batches the zeroed negative with the prompt: both 3 chunks.
    assert seen and all(shape == (2, 3 * 77, 96) for shape in seen)


def test_text_to_image_gives_the_requested_size_reproducibly(
    t2i: StableDiffusionXLPipeline,
) -> None:
    request = GenerationRequest(prompt="a lighthouse at dusk", width=96, height=64, steps=3, n=2)
    request.seed = 11
    params = resolve_params(request, PROFILE)
    assert params.guidance_scale == 5.0  # SDXL's default
    progress: list[tuple[int, int]] = []
    result = run_text_to_image(t2i, params, lambda done, total: progress.append((done, total)))
    assert [image.size for image in result.images] == [(96, 64), (96, 64)]
    assert progress[-1] == (6, 6)
    # Image 1 of the job is the image of a one-image job with seed + 1.
    single = GenerationRequest(prompt="a lighthouse at dusk", width=96, height=64, steps=3)
    single.seed = 12
    (again,) = run_text_to_image(t2i, resolve_params(single, PROFILE)).images
    # Within a level of 255: a batch of two and a batch of one may take different matmul
    # paths, whose last-bit differences can round a few pixels the other way.
    difference = np.abs(np.asarray(again, np.int16) - np.asarray(result.images[1], np.int16))
    assert difference.max() <= 1


def photo(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_inpainting_keeps_every_unmasked_pixel(models: LoadedModels) -> None:
    assert models.inpainting is not None
    image = photo(100, 72)  # not multiples of 8: padded to the latent grid and cropped
    mask = np.zeros((72, 100), dtype=np.uint8)
    mask[20:50, 30:70] = 255
    request = GenerationRequest(task=Task.TASK_INPAINT, prompt="a red hat")
    request.seed = 5
    params = params_for_mask_image(request, PROFILE, image, Image.fromarray(mask))
    # SDXL inpainting's defaults, scaled: 12 steps at strength 0.8 run 9.
    assert (params.steps, params.strength, params.denoise_steps) == (12, 0.8, 9)
    progress: list[tuple[int, int]] = []
    result = run_inpainting(models.inpainting, params, lambda d, t: progress.append((d, t)))
    (out,) = result.images
    assert out.size == (100, 72) and progress[-1] == (9, 9)
    pixels, kept = np.asarray(out), mask == 0
    assert np.array_equal(pixels[kept], np.asarray(image)[kept])
    assert not np.array_equal(pixels[~kept], np.asarray(image)[~kept])


def test_outpainting_grows_the_canvas_and_keeps_the_original(models: LoadedModels) -> None:
    assert models.inpainting is not None
    image = photo(64, 56)
    request = GenerationRequest(
        task=Task.TASK_OUTPAINT, prompt="a wide beach", steps=4, outpaint=Outpaint(left=16, top=8)
    )
    request.seed = 2
    (out,) = run_inpainting(
        models.inpainting, resolve_outpaint_params(request, PROFILE, image)
    ).images
    assert out.size == (80, 64)
    assert np.array_equal(np.asarray(out)[8:, 16:], np.asarray(image))


def test_a_float16_sdxl_vae_decodes_in_float32(models_dir: Path) -> None:
    # SDXL's VAE overflows in float16 (`force_upcast`): decoded in float32, as the stock
    # SDXL pipelines do, and cast back afterwards. (float16 runs on CPU, slowly, at 64².)
    half = load_models(PROFILE, models_dir, CPU, torch.float16).text_to_image
    vae = half.vae
    decode = vae.decode
    seen: list[tuple[torch.dtype, torch.dtype]] = []

    def spy(latents: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append((latents.dtype, vae.dtype))
        return decode(latents, *args, **kwargs)

    vae.decode = spy  # type: ignore[method-assign]
    request = GenerationRequest(prompt="a cat", width=64, height=64, steps=2)
    request.seed = 1
    (image,) = run_text_to_image(half, resolve_params(request, PROFILE)).images
    assert seen == [(torch.float32, torch.float32)] and vae.dtype == torch.float16
    assert image.size == (64, 64)
