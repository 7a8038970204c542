"""Instruction editing: change an image from its source caption (what it shows) to a
target caption (what it should show), keeping everything the captions agree on.

Two methods (docs/worker.md "Editing" compares them and says why the default is the
default):

- `p2p`, the LLMGA paper's: DDIM inversion of the image under the source caption, then
  the source and target branches denoise together from the inverted noise; Direct
  Inversion keeps them on the inversion trajectory (exact reconstruction) and
  prompt-to-prompt attention control makes the target branch reuse the source branch's
  attention maps early in the schedule (editing/attention_control.py).
- `diffedit`, LLMGA's released code's: a DiffEdit mask from where source and target noise
  predictions differ (editing/diffedit_mask.py), DDIM inversion of part of the schedule,
  and regeneration under the target caption that keeps the inverted latents outside the
  mask at every step; the input's pixels are put back outside the mask.

Runs on an SD 1.5 `StableDiffusionPipeline`'s components (the profile's editing VAE, if
it has one) with a DDIM schedule. Reads top to bottom like a diffusers pipeline:

0. check the inputs and resolve the defaults (`resolve_edit_params`);
1. pad the image to whole latent pixels, encode it and the captions;
2. invert and regenerate with the chosen method, reporting every model evaluation;
3. decode, crop the padding off (diffedit: the input's pixels outside the mask).

Both methods are deterministic given their inputs (DDIM, eta 0); only DiffEdit's mask
draws noise (from the seed). An edit therefore returns one image.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from PIL import Image

from services.common.contract import EditMethod, GenerationRequest
from services.common.image_rules import LATENT_SCALE
from services.worker.editing.attention_control import (
    AttentionController,
    attention_control,
    position_map,
)
from services.worker.editing.captions import EncodedCaptions, encode_captions
from services.worker.editing.diffedit_mask import MASK_NOISE_DRAWS, diffedit_mask
from services.worker.editing.inversion import (
    DdimSchedule,
    OnStep,
    ddim_invert,
    ddim_sample,
    ddim_schedule,
    direct_inversion,
    keep_outside_mask,
)
from services.worker.metrics import step_timer
from services.worker.pipelines.common import (
    GenerationResult,
    ProgressCallback,
    ResolvedParams,
    decode_latents,
    draw_seed,
    image_generator,
    resolve_sampling,
    synchronize,
    uses_guidance,
)
from services.worker.pipelines.inpainting import (
    check_image_size,
    composite,
    pad_image_to_latent_grid,
)
from services.worker.profiles import ModelProfile

EditMethodName = Literal["p2p", "diffedit"]
_METHODS: dict[int, EditMethodName] = {
    EditMethod.EDIT_METHOD_P2P: "p2p",
    EditMethod.EDIT_METHOD_DIFFEDIT: "diffedit",
}
# DiffEdit inverts and regenerates the last 80% of the schedule (its encoding ratio, and
# diffusers' StableDiffusionDiffEditPipeline's default `inpaint_strength`): the edited
# region is regenerated from mostly noise, the rest is kept anyway.
DIFFEDIT_STRENGTH = 0.8


@dataclass(frozen=True)
class EditParams(ResolvedParams):
    """An edit job: the sampling parameters (`prompt` is the target caption) plus the image
    and how to edit it. `width`/`height` are the image's size."""

    image: Image.Image  # RGB
    source_prompt: str
    instruction: str
    method: EditMethodName

    @property
    def diffedit_steps(self) -> int:
        """The schedule steps DiffEdit inverts and regenerates."""
        return max(1, int(self.steps * DIFFEDIT_STRENGTH))

    @property
    def denoise_steps(self) -> int:
        """Model evaluations of the edit (each one progress step): inversion and
        regeneration, plus DiffEdit's mask draws."""
        if self.method == "p2p":
            return 2 * self.steps
        return MASK_NOISE_DRAWS + 2 * self.diffedit_steps


def resolve_edit_params(
    request: GenerationRequest,
    profile: ModelProfile,
    image: Image.Image | None,
    draw: Callable[[], int] = draw_seed,
) -> EditParams:
    """Check an edit request for `image` (None: the request named none) and fill in the
    profile's defaults (method: `profile.edit_method`).

    Raises ValueError with a message fit for the job record when the request is invalid.
    """
    if image is None:
        raise ValueError("edit needs an input image")
    if not request.edit.source_caption.strip():
        raise ValueError("edit needs a source caption (edit.source_caption: what the image shows)")
    if not request.prompt.strip():
        raise ValueError("edit needs a target caption (prompt: what the image should show)")
    check_image_size(request, profile, image)
    sampling = resolve_sampling(request, profile, image.width, image.height, draw)
    if sampling.num_images != 1:
        raise ValueError(
            f"n must be 1 for an edit, got {sampling.num_images}: an edit is deterministic "
            "(DDIM inversion), so more images would be copies of the first"
        )
    method = request.edit.method
    if method == EditMethod.EDIT_METHOD_UNSPECIFIED:
        resolved: EditMethodName = profile.edit_method
    elif method in _METHODS:
        resolved = _METHODS[method]
    else:
        raise ValueError(f"unknown edit method {method}; known: {sorted(_METHODS.values())}")
    return EditParams(
        **vars(sampling),
        image=image.convert("RGB"),
        source_prompt=request.edit.source_caption,
        instruction=request.edit.instruction,
        method=resolved,
    )


def progress_ticker(on_progress: ProgressCallback | None, params: EditParams) -> OnStep:
    """An `on_step` that counts the edit's model evaluations and reports each one as a
    job progress step (an exception from `on_progress` stops the edit there)."""
    tick = step_timer()  # llmga_worker_denoise_step_duration_seconds
    done = 0

    def on_step() -> None:
        nonlocal done
        tick()
        done += 1
        if on_progress is not None:
            on_progress(done, params.total_steps)

    return on_step


@torch.no_grad()
def encode_image(pipeline: StableDiffusionPipeline, image: Image.Image) -> torch.Tensor:
    """The image's latent (the VAE posterior's mode: deterministic), scaled as the UNet
    expects it."""
    pixels = pipeline.image_processor.preprocess(image).to(
        device=pipeline._execution_device, dtype=pipeline.vae.dtype
    )
    latents: torch.Tensor = pipeline.vae.encode(pixels).latent_dist.mode()
    return latents * pipeline.vae.config.scaling_factor


@torch.no_grad()
def edit_with_p2p(
    pipeline: StableDiffusionPipeline,
    schedule: DdimSchedule,
    latents: torch.Tensor,
    captions: EncodedCaptions,
    guidance_scale: float,
    on_step: OnStep,
) -> torch.Tensor:
    """The paper's method: invert `latents` under the source caption, then denoise the
    (source, target) pair from the inverted noise with Direct Inversion and
    prompt-to-prompt attention control. Returns the target branch's clean latent."""
    unet = pipeline.unet
    trajectory = ddim_invert(
        unet, schedule, latents, captions.source_embeds, schedule.steps, on_step
    )

    pair_embeds = torch.cat([captions.source_embeds, captions.target_embeds])
    negative = captions.negative_embeds
    source_positions, copied_positions = position_map(
        captions.source_ids,
        captions.target_ids,
        captions.chunk_size,
        captions.chunk_length,
        captions.chunks,
    )
    controller = AttentionController(
        total_steps=schedule.steps,
        source_positions=source_positions,
        copied_positions=copied_positions,
        # Batch (uncond source, uncond target, source, target) with guidance: only the
        # conditional pair is controlled, as in prompt-to-prompt.
        controlled_groups=[1] if negative is not None else [0],
    )
    with attention_control(unet, controller):
        edited = ddim_sample(
            unet,
            schedule,
            torch.cat([trajectory[-1], trajectory[-1]]),
            pair_embeds,
            torch.cat([negative, negative]) if negative is not None else None,
            guidance_scale,
            start=schedule.steps,
            fix_step=direct_inversion(trajectory),
            before_step=lambda k: controller.set_step(schedule.steps - k),
            on_step=on_step,
        )
    return edited[1:]


@torch.no_grad()
def edit_with_diffedit(
    pipeline: StableDiffusionPipeline,
    schedule: DdimSchedule,
    latents: torch.Tensor,
    captions: EncodedCaptions,
    params: EditParams,
    on_step: OnStep,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The released code's method: DiffEdit mask, inversion of the last
    `params.diffedit_steps` of the schedule under the source caption, regeneration under
    the target caption inside the mask only. Returns the clean latent and the mask (bool,
    latent resolution, True = edited)."""
    unet = pipeline.unet
    mask = diffedit_mask(
        unet,
        schedule,
        latents,
        captions.source_embeds,
        captions.target_embeds,
        image_generator(params.seed),
        on_step,
    )
    trajectory = ddim_invert(
        unet, schedule, latents, captions.source_embeds, params.diffedit_steps, on_step
    )
    edited = ddim_sample(
        unet,
        schedule,
        trajectory[-1],
        captions.target_embeds,
        captions.negative_embeds,
        params.guidance_scale,
        start=params.diffedit_steps,
        fix_step=keep_outside_mask(trajectory, mask),
        on_step=on_step,
    )
    return edited, mask


def pixel_mask(latent_mask: torch.Tensor, width: int, height: int) -> np.ndarray:
    """A latent-resolution mask (1, 1, h, w) at pixel resolution, cropped to the image:
    bool (height, width)."""
    pixels = latent_mask[0, 0].cpu().numpy()
    pixels = pixels.repeat(LATENT_SCALE, axis=0).repeat(LATENT_SCALE, axis=1)
    return np.asarray(pixels[:height, :width], dtype=bool)


def encode_edit_captions(pipeline: StableDiffusionPipeline, params: EditParams) -> EncodedCaptions:
    """The source and target captions (and the negative prompt) of an edit, encoded whole."""
    return encode_captions(
        pipeline.tokenizer,
        pipeline.text_encoder,
        params.source_prompt,
        params.prompt,
        params.negative_prompt,
        pipeline._execution_device,
        do_classifier_free_guidance=uses_guidance(pipeline, params.guidance_scale),
    )


def edit_latents(
    pipeline: StableDiffusionPipeline,
    schedule: DdimSchedule,
    latents: torch.Tensor,
    captions: EncodedCaptions,
    params: EditParams,
    on_step: OnStep,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The edited latent by `params.method`, with DiffEdit's mask (None for `p2p`)."""
    if params.method == "p2p":
        edited = edit_with_p2p(
            pipeline, schedule, latents, captions, params.guidance_scale, on_step
        )
        return edited, None
    return edit_with_diffedit(pipeline, schedule, latents, captions, params, on_step)


@torch.no_grad()
def run_edit(
    pipeline: StableDiffusionPipeline,
    params: EditParams,
    on_progress: ProgressCallback | None = None,
) -> GenerationResult:
    """Edit `params.image` from `params.source_prompt` to `params.prompt` with
    `params.method`.

    `on_progress(done, total)` is called after every model evaluation; an exception it
    raises stops the job there. Encoding the image and captions counts as encoding,
    inversion, mask and regeneration as denoising.
    """
    device = pipeline._execution_device
    on_step = progress_ticker(on_progress, params)

    # Step 1: the canvas (whole latent pixels), its latent and the captions' encodings.
    started = time.perf_counter()
    canvas = pad_image_to_latent_grid(params.image)
    latents = encode_image(pipeline, canvas)
    captions = encode_edit_captions(pipeline, params)
    schedule = ddim_schedule(dict(pipeline.scheduler.config), params.steps)
    synchronize(device)
    encode_s = time.perf_counter() - started

    # Step 2: invert and regenerate with the chosen method.
    started = time.perf_counter()
    edited, mask = edit_latents(pipeline, schedule, latents, captions, params, on_step)
    synchronize(device)
    denoise_s = time.perf_counter() - started

    # Step 3: decode and crop; DiffEdit keeps the input's pixels outside its mask exactly.
    started = time.perf_counter()
    (decoded,) = decode_latents(pipeline, edited, image_generator(params.seed))
    decoded = decoded.crop((0, 0, params.width, params.height))
    if mask is not None:
        edited_region = pixel_mask(mask, params.width, params.height)
        decoded = Image.fromarray(composite(decoded, params.image, edited_region))
    decode_s = time.perf_counter() - started

    return GenerationResult(
        images=[decoded],
        seeds=params.seeds,
        params=params,
        prompt_tokens=len(captions.target_ids),
        chunks=captions.chunks,
        encode_s=encode_s,
        denoise_s=denoise_s,
        decode_s=decode_s,
        source_prompt_used=params.source_prompt,
        edit_method_used=params.method,
    )
