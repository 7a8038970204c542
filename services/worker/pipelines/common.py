"""What every diffusion task shares: the resolved parameters and result of a job, seeds,
prompt encoding and decoding (per-step progress of a batch of images: batching.py).

Each task's pipeline module (text_to_image.py, inpainting.py, ...) reads top to bottom and
calls these steps by name, so a seed, a progress step or a prompt encoding means the same
in every task.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.pipelines.controlnet.pipeline_controlnet import StableDiffusionControlNetPipeline
from diffusers.pipelines.controlnet.pipeline_controlnet_sd_xl import (
    StableDiffusionXLControlNetPipeline,
)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_inpaint import (
    StableDiffusionXLInpaintPipeline,
)
from PIL import Image

from services.common.contract import GenerationRequest
from services.common.image_rules import LATENT_SCALE, side_within
from services.worker.profiles import ModelProfile
from services.worker.prompt_encoding import (
    EncodedPrompts,
    TextConditioner,
    encode_long_prompt,
    encode_long_prompt_sdxl,
)

# (steps done, total steps of the job). May raise to stop the job between two steps.
ProgressCallback = Callable[[int, int], None]
# (image index, step within the image (1-based), job-wide step, job total, the image's
# latents (channels, h, w), whether the pipeline is SDXL). A progress callback with an
# `on_latents` attribute of this type gets the latents after every denoising step
# (previews, services/worker/previews.py); it must not change them.
LatentsCallback = Callable[[int, int, int, int, torch.Tensor, bool], None]
SDXLPipeline = (
    StableDiffusionXLPipeline
    | StableDiffusionXLInpaintPipeline
    | StableDiffusionXLControlNetPipeline
)
# Any pipeline a task runs: SD 1.5 or SDXL, text-to-image, inpainting or ControlNet (the
# same VAE, UNet and callback API; SDXL adds a second text encoder).
SDPipeline = (
    StableDiffusionPipeline
    | StableDiffusionInpaintPipeline
    | StableDiffusionControlNetPipeline
    | SDXLPipeline
)

MIN_SIDE = 64  # the smallest image side accepted (8 latent pixels)
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes any unsigned 64-bit value


@dataclass(frozen=True)
class ResolvedParams:
    """A request with the profile's defaults filled in: exactly what is run."""

    prompt: str
    negative_prompt: str
    # The size of the images the job returns.
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
    def denoise_steps(self) -> int:
        """Denoising steps of one image (tasks with a strength run fewer than `steps`)."""
        return self.steps

    @property
    def total_steps(self) -> int:
        """Denoising steps of the whole job: progress.total in the job record."""
        return self.denoise_steps * self.num_images


@dataclass(frozen=True)
class GenerationResult:
    """The generated images in order, with their seeds and where the time went."""

    images: list[Image.Image]
    seeds: list[int]
    params: ResolvedParams
    prompt_tokens: int
    chunks: int
    encode_s: float
    denoise_s: float
    decode_s: float
    # Recorded on the job when a task has them: an edit's source caption and method, and
    # what restored an inpaint/outpaint/restore result ("diffrir", "color"; "" for none).
    source_prompt_used: str = ""
    edit_method_used: str = ""
    restore_used: str = ""
    # Images in the denoising batch the job ran in: its own and those of the jobs it
    # shared it with (services/worker/batching.py); 1 for a task that runs images alone.
    batch_size: int = 1


def draw_seed() -> int:
    """A fresh seed for requests without one (32 bits: short enough to read and retype)."""
    return secrets.randbelow(2**32)


def check_side(name: str, side: int, profile: ModelProfile) -> None:
    """A side the model can run: a multiple of 8 (a whole latent pixel) within the profile's
    limits. Raises ValueError saying which side is wrong."""
    if side % LATENT_SCALE:
        raise ValueError(f"{name} must be a multiple of {LATENT_SCALE}, got {side}")
    if not side_within(side, MIN_SIDE, profile.max_side):
        raise ValueError(f"{name} must be between {MIN_SIDE} and {profile.max_side}, got {side}")


def resolve_sampling(
    request: GenerationRequest,
    profile: ModelProfile,
    width: int,
    height: int,
    draw: Callable[[], int] = draw_seed,
    default_steps: int | None = None,
) -> ResolvedParams:
    """Check the request's sampling fields (steps, guidance, n, seed) and fill in the
    profile's defaults (0 or unset means the default; steps: `default_steps` when the task
    has its own, else the profile's) for images of `width` x `height`, which the caller has
    checked.

    Raises ValueError with a message fit for the job record when the request is invalid.
    """
    steps = request.steps or default_steps or profile.steps
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
    return ResolvedParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        width=width,
        height=height,
        steps=steps,
        guidance_scale=float(guidance_scale),
        seed=seed,
        num_images=num_images,
    )


def uses_guidance(pipeline: SDPipeline, guidance_scale: float) -> bool:
    """Whether the pipeline will run classifier-free guidance (its own rule)."""
    return guidance_scale > 1 and pipeline.unet.config.time_cond_proj_dim is None


def is_sdxl(pipeline: SDPipeline) -> bool:
    """Whether `pipeline` has SDXL's two text encoders."""
    return getattr(pipeline, "text_encoder_2", None) is not None


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so stage timings measure the work and not its queuing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encode_prompts(
    pipeline: SDPipeline, params: ResolvedParams, conditioner: TextConditioner | None = None
) -> tuple[EncodedPrompts, float]:
    """Encode the job's prompts once for all its images, without truncation
    (prompt_encoding.py; SDXL: both text encoders and the pooled embedding), or with the
    profile's `conditioner` instead of the pipeline's CLIP encoders. Returns the encodings
    and the seconds it took."""
    device = pipeline._execution_device
    started = time.perf_counter()
    guidance = uses_guidance(pipeline, params.guidance_scale)
    if conditioner is not None:
        encoded = conditioner(params.prompt, params.negative_prompt, device, guidance)
    elif is_sdxl(pipeline):
        encoded = encode_long_prompt_sdxl(
            (pipeline.tokenizer, pipeline.tokenizer_2),  # type: ignore[union-attr]
            (pipeline.text_encoder, pipeline.text_encoder_2),  # type: ignore[union-attr]
            params.prompt,
            params.negative_prompt,
            device,
            do_classifier_free_guidance=guidance,
            zero_empty_negative=bool(pipeline.config.get("force_zeros_for_empty_prompt")),
        )
    else:
        encoded = encode_long_prompt(
            pipeline.tokenizer,
            pipeline.text_encoder,
            params.prompt,
            params.negative_prompt,
            device,
            do_classifier_free_guidance=guidance,
        )
    synchronize(device)
    return encoded, time.perf_counter() - started


def image_generator(seed: int) -> torch.Generator:
    """The noise source of one image: a CPU generator, so the same seed gives the same noise
    on any device."""
    return torch.Generator("cpu").manual_seed(seed)


def decode_latents(
    pipeline: SDPipeline, latents: torch.Tensor, generator: torch.Generator
) -> list[Image.Image]:
    """Decode latents with the VAE and post-process exactly as the stock pipeline does."""
    vae = pipeline.vae
    # SDXL's VAE overflows in float16 (its config says `force_upcast`): the stock SDXL
    # pipelines decode in float32 and cast the VAE back; SD 1.5's decode in float16.
    upcast = is_sdxl(pipeline) and vae.dtype == torch.float16 and vae.config.force_upcast
    if upcast:
        vae.to(dtype=torch.float32)
    # The VAE may have its own dtype (LLMGA_WORKER_VAE_DTYPE, optimisations.py).
    latents = latents.to(vae.dtype)
    try:
        decoded = vae.decode(
            latents / vae.config.scaling_factor, return_dict=False, generator=generator
        )[0]
    finally:
        if upcast:
            vae.to(dtype=torch.float16)
    images: list[Image.Image] = pipeline.image_processor.postprocess(
        decoded, output_type="pil", do_denormalize=[True] * decoded.shape[0]
    )
    return images
