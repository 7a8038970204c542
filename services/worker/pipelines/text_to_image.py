"""Text-to-image: one `GenerationRequest` run on a loaded SD 1.5 or SDXL pipeline.

Reads top to bottom like a diffusers pipeline: check the inputs and resolve the profile's
defaults, encode the prompts (without truncation, prompt_encoding.py), then for each image
denoise from its own seeded noise and decode. Image i of a job uses seed + i and is
generated on its own, so it is exactly the image a one-image job with that seed gives.
The steps shared with the other tasks (seeds, encoding, progress, decoding) are in
common.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from PIL import Image

from services.common.contract import GenerationRequest
from services.worker.pipelines.common import (
    GenerationResult,
    ProgressCallback,
    ResolvedParams,
    check_side,
    decode_latents,
    draw_seed,
    encode_prompts,
    image_generator,
    resolve_sampling,
    step_reporter,
    synchronize,
)
from services.worker.profiles import ModelProfile
from services.worker.prompt_encoding import TextConditioner


def resolve_params(
    request: GenerationRequest,
    profile: ModelProfile,
    draw: Callable[[], int] = draw_seed,
) -> ResolvedParams:
    """Check `request` and fill in the profile's defaults (0 or unset means the default).

    Raises ValueError with a message fit for the job record when the request is invalid.
    """
    width = request.width or profile.width
    height = request.height or profile.height
    check_side("width", width, profile)
    check_side("height", height, profile)
    return resolve_sampling(request, profile, width, height, draw)


@torch.no_grad()
def run_text_to_image(
    pipeline: StableDiffusionPipeline | StableDiffusionXLPipeline,
    params: ResolvedParams,
    on_progress: ProgressCallback | None = None,
    conditioning: Mapping[str, Any] | None = None,
    text_conditioner: TextConditioner | None = None,
) -> GenerationResult:
    """Generate `params.num_images` images with `pipeline` (already loaded and on its device).

    `on_progress(done, total)` is called after every denoising step of every image; an
    exception it raises stops the job there and propagates to the caller. `conditioning`:
    more keyword arguments of every denoising call, from tasks that steer text-to-image
    (ControlNet's control image and scale, controlnet.py). `text_conditioner`: the
    profile's prompt encoder when it is not the pipeline's CLIP (Beyond CLIP's LLM).
    """
    device = pipeline._execution_device

    # Step 1: encode the prompts once for all images, without truncation.
    encoded, encode_s = encode_prompts(pipeline, params, text_conditioner)

    images: list[Image.Image] = []
    denoise_s = decode_s = 0.0
    for index, seed in enumerate(params.seeds):
        generator = image_generator(seed)

        # Step 2: denoise this image, reporting every step.
        started = time.perf_counter()
        latents = pipeline(
            **encoded.pipeline_kwargs(),
            height=params.height,
            width=params.width,
            num_inference_steps=params.steps,
            guidance_scale=params.guidance_scale,
            generator=generator,
            output_type="latent",
            callback_on_step_end=step_reporter(on_progress, params, index),
            **(conditioning or {}),
        ).images
        synchronize(device)
        denoise_s += time.perf_counter() - started

        # Step 3: decode the latents to an image, as the stock pipeline does.
        started = time.perf_counter()
        images += decode_latents(pipeline, latents, generator)
        decode_s += time.perf_counter() - started

    return GenerationResult(
        images=images,
        seeds=params.seeds,
        params=params,
        prompt_tokens=encoded.prompt_tokens,
        chunks=encoded.chunks,
        encode_s=encode_s,
        denoise_s=denoise_s,
        decode_s=decode_s,
    )
