"""Text-to-image: one `GenerationRequest` run on a loaded Stable Diffusion 1.5 pipeline.

Reads top to bottom like a diffusers pipeline: check the inputs and resolve the profile's
defaults, encode the prompts (without truncation, prompt_encoding.py), then for each image
denoise from its own seeded noise and decode. Image i of a job uses seed + i and is
generated on its own, so it is exactly the image a one-image job with that seed gives.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from PIL import Image

from services.common.contract import GenerationRequest
from services.worker.profiles import ModelProfile
from services.worker.prompt_encoding import EncodedPrompts, encode_long_prompt

# (steps done, total steps of the job). May raise to stop the job between two steps.
ProgressCallback = Callable[[int, int], None]

MIN_SIDE = 64  # the smallest image side accepted (8 latent pixels)
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes any unsigned 64-bit value


@dataclass(frozen=True)
class TextToImageParams:
    """A request with the profile's defaults filled in: exactly what is run."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    num_images: int

    @property
    def seeds(self) -> list[int]:
        """Image i uses seed + i."""
        return [self.seed + i for i in range(self.num_images)]

    @property
    def total_steps(self) -> int:
        """Denoising steps of the whole job: progress.total in the job record."""
        return self.steps * self.num_images


@dataclass(frozen=True)
class TextToImageResult:
    """The generated images in order, with their seeds and where the time went."""

    images: list[Image.Image]
    seeds: list[int]
    params: TextToImageParams
    prompt_tokens: int
    chunks: int
    encode_s: float
    denoise_s: float
    decode_s: float


def draw_seed() -> int:
    """A fresh seed for requests without one (32 bits: short enough to read and retype)."""
    return secrets.randbelow(2**32)


def resolve_params(
    request: GenerationRequest,
    profile: ModelProfile,
    draw: Callable[[], int] = draw_seed,
) -> TextToImageParams:
    """Check `request` and fill in the profile's defaults (0 or unset means the default).

    Raises ValueError with a message fit for the job record when the request is invalid.
    """
    width = request.width or profile.width
    height = request.height or profile.height
    for side_name, side in (("width", width), ("height", height)):
        if side % 8:
            raise ValueError(f"{side_name} must be a multiple of 8, got {side}")
        if not MIN_SIDE <= side <= profile.max_side:
            raise ValueError(
                f"{side_name} must be between {MIN_SIDE} and {profile.max_side}, got {side}"
            )
    steps = request.steps or profile.steps
    if steps > profile.max_steps:
        raise ValueError(f"steps must be at most {profile.max_steps}, got {steps}")
    guidance_scale = (
        request.guidance_scale if request.HasField("guidance_scale") else profile.guidance_scale
    )
    if not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale}")
    num_images = request.n or 1
    if num_images > profile.max_images:
        raise ValueError(f"n must be at most {profile.max_images}, got {num_images}")
    seed = request.seed if request.HasField("seed") else draw()
    if seed + num_images - 1 > MAX_SEED:
        raise ValueError(f"seed + n - 1 must fit in 64 bits, got seed {seed} and n {num_images}")
    return TextToImageParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        width=width,
        height=height,
        steps=steps,
        guidance_scale=float(guidance_scale),
        seed=seed,
        num_images=num_images,
    )


def uses_guidance(pipeline: StableDiffusionPipeline, guidance_scale: float) -> bool:
    """Whether the pipeline will run classifier-free guidance (its own rule)."""
    return guidance_scale > 1 and pipeline.unet.config.time_cond_proj_dim is None


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so stage timings measure the work and not its queuing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def run_text_to_image(
    pipeline: StableDiffusionPipeline,
    params: TextToImageParams,
    on_progress: ProgressCallback | None = None,
) -> TextToImageResult:
    """Generate `params.num_images` images with `pipeline` (already loaded and on its device).

    `on_progress(done, total)` is called after every denoising step of every image; an
    exception it raises stops the job there and propagates to the caller.
    """
    device = pipeline._execution_device
    do_guidance = uses_guidance(pipeline, params.guidance_scale)

    # Step 1: encode the prompts once for all images, without truncation.
    started = time.perf_counter()
    encoded: EncodedPrompts = encode_long_prompt(
        pipeline.tokenizer,
        pipeline.text_encoder,
        params.prompt,
        params.negative_prompt,
        device,
        do_classifier_free_guidance=do_guidance,
    )
    _synchronize(device)
    encode_s = time.perf_counter() - started

    images: list[Image.Image] = []
    denoise_s = decode_s = 0.0
    for index, seed in enumerate(params.seeds):
        # Noise comes from a CPU generator: the same seed gives the same noise on any device.
        generator = torch.Generator("cpu").manual_seed(seed)

        # Step 2: denoise this image, reporting every step.
        def report_step(
            _pipeline: StableDiffusionPipeline,
            step: int,
            _timestep: Any,
            callback_kwargs: dict[str, Any],
            done_before: int = index * params.steps,
        ) -> dict[str, Any]:
            if on_progress is not None:
                on_progress(done_before + step + 1, params.total_steps)
            return callback_kwargs

        started = time.perf_counter()
        latents = pipeline(
            prompt_embeds=encoded.prompt_embeds,
            negative_prompt_embeds=encoded.negative_prompt_embeds,
            height=params.height,
            width=params.width,
            num_inference_steps=params.steps,
            guidance_scale=params.guidance_scale,
            generator=generator,
            output_type="latent",
            callback_on_step_end=report_step,
        ).images
        _synchronize(device)
        denoise_s += time.perf_counter() - started

        # Step 3: decode the latents to an image, as the stock pipeline does.
        started = time.perf_counter()
        decoded = pipeline.vae.decode(
            latents / pipeline.vae.config.scaling_factor, return_dict=False, generator=generator
        )[0]
        images += pipeline.image_processor.postprocess(
            decoded, output_type="pil", do_denormalize=[True] * decoded.shape[0]
        )
        decode_s += time.perf_counter() - started

    return TextToImageResult(
        images=images,
        seeds=params.seeds,
        params=params,
        prompt_tokens=encoded.prompt_tokens,
        chunks=encoded.chunks,
        encode_s=encode_s,
        denoise_s=denoise_s,
        decode_s=decode_s,
    )
