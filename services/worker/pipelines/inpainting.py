"""Inpainting: regenerate the masked region of an image from a prompt, keep the rest exactly.

Runs on a `StableDiffusionInpaintPipeline` (SD 1.5 inpainting: a 9-channel UNet fed the
noisy latent, the mask and the masked image's latent). Reads top to bottom like a diffusers
pipeline:

0. check the inputs and resolve the profile's defaults (`resolve_inpaint_params`);
1. pad the image to whole latent pixels (multiples of 8) by repeating its edges; the
   padding is kept, not generated, and cropped off again at the end;
2. encode the prompts once, without truncation (common.py, as text-to-image);
3. denoise all images together (one batch, pipelines/batching.py), image i from the noise
   of seed + i, reporting every step (as text-to-image);
4. decode with the VAE (as text-to-image), crop, and put the input's pixels back outside
   the mask: the VAE round trip changes every pixel a little, and a user's unmasked
   pixels must come back exactly;
5. optionally restore the generated region against the kept one, inside the mask only:
   DiffRIR when its weights are loaded, else the colour fallback (restorers.py).

Outpainting (outpainting.py) builds an extended canvas and its border mask and runs this.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_inpaint import (
    StableDiffusionXLInpaintPipeline,
)
from PIL import Image

from services.common.contract import GenerationRequest
from services.common.image_rules import snap_up
from services.worker.masks import load_mask, mask_to_image
from services.worker.pipelines.batching import (
    BatchMember,
    DenoisingBatch,
    equal_shape_groups,
    finished,
)
from services.worker.pipelines.common import (
    GenerationResult,
    ProgressCallback,
    ResolvedParams,
    check_side,
    decode_latents,
    draw_seed,
    encode_prompts,
    resolve_sampling,
)
from services.worker.profiles import ModelProfile
from services.worker.restorers import COLOR_RESTORER, Restorer


@dataclass(frozen=True)
class InpaintParams(ResolvedParams):
    """An inpainting job: the sampling parameters plus the image, what to regenerate in it
    and how much of the noise schedule to run. `width`/`height` are the image's size."""

    image: Image.Image  # RGB
    mask: np.ndarray  # bool (height, width): True = regenerate
    strength: float

    @property
    def denoise_steps(self) -> int:
        """diffusers runs int(steps * strength) of the schedule's steps."""
        return int(self.steps * self.strength)


def check_image_size(request: GenerationRequest, profile: ModelProfile, image: Image.Image) -> None:
    """For tasks whose output has the input image's size (inpaint, outpaint, edit:
    `image_rules.SIZED_BY_INPUT_IMAGE`, restore checks its own): width and height must be
    unset, and the image padded to whole latent pixels must be a size
    the model runs. Raises ValueError saying what is wrong."""
    if request.width or request.height:
        raise ValueError(
            "width and height must be unset: the output has the input image's size "
            f"({image.width}x{image.height})"
        )
    check_side("the image's width (rounded up to a multiple of 8)", snap_up(image.width), profile)
    check_side("the image's height (rounded up to a multiple of 8)", snap_up(image.height), profile)


def resolve_inpaint_params(
    request: GenerationRequest,
    profile: ModelProfile,
    image: Image.Image,
    mask: np.ndarray,
    draw: Callable[[], int] = draw_seed,
) -> InpaintParams:
    """Check an inpaint or outpaint request for `image` and its boolean `mask` (already
    checked against the image) and fill in the profile's defaults.

    Raises ValueError with a message fit for the job record when the request is invalid.
    """
    check_image_size(request, profile, image)
    sampling = resolve_sampling(
        request, profile, image.width, image.height, draw, default_steps=profile.inpaint_steps
    )
    strength = request.strength if request.HasField("strength") else profile.inpaint_strength
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    if int(sampling.steps * strength) < 1:
        raise ValueError(
            f"steps x strength must be at least 1, got {sampling.steps} x {strength:g}"
        )
    return InpaintParams(
        **vars(sampling),
        image=image.convert("RGB"),
        mask=mask,
        strength=float(strength),
    )


def params_for_mask_image(
    request: GenerationRequest,
    profile: ModelProfile,
    image: Image.Image,
    mask_image: Image.Image,
    draw: Callable[[], int] = draw_seed,
) -> InpaintParams:
    """`resolve_inpaint_params` for a user's mask image (masks.py: binarized and checked)."""
    return resolve_inpaint_params(request, profile, image, load_mask(mask_image, image.size), draw)


def pad_to_latent_grid(image: Image.Image, mask: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """The image and mask padded on the right and bottom to multiples of 8. The image's
    edge pixels are repeated (continuous content for the VAE) and the padding is not masked
    (kept as context, never generated)."""
    pad_y, pad_x = snap_up(image.height) - image.height, snap_up(image.width) - image.width
    padded_mask = np.pad(mask, ((0, pad_y), (0, pad_x)), constant_values=False)
    return pad_image_to_latent_grid(image), padded_mask


def pad_image_to_latent_grid(image: Image.Image) -> Image.Image:
    """The image padded on the right and bottom to multiples of 8 by repeating its edge
    pixels (continuous content for the VAE); the image itself when no padding is needed."""
    pad_y, pad_x = snap_up(image.height) - image.height, snap_up(image.width) - image.width
    if not pad_x and not pad_y:
        return image
    pixels = np.pad(np.asarray(image), ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")
    return Image.fromarray(pixels)


def composite(generated: Image.Image, original: Image.Image, mask: np.ndarray) -> np.ndarray:
    """Generated pixels inside `mask`, `original`'s exactly outside (H, W, 3 uint8)."""
    return np.where(mask[..., None], np.asarray(generated), np.asarray(original))


def run_inpainting(
    pipeline: StableDiffusionInpaintPipeline | StableDiffusionXLInpaintPipeline,
    params: InpaintParams,
    on_progress: ProgressCallback | None = None,
    restorer: Restorer | None = COLOR_RESTORER,
) -> GenerationResult:
    """Regenerate `params.mask` of `params.image`, `params.num_images` times, all images
    denoised together as one batch.

    `on_progress(done, total)` is called after every denoising step; an exception it
    raises stops the job there. A `restorer` (DiffRIR, or the colour fallback by default;
    None: none) then restores each image's generated region against the input, from the
    image's seed. Composition and restoration count as decoding in the timings.
    """
    (outcome,) = run_inpainting_batch(pipeline, [BatchMember(params, on_progress)], [restorer])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@torch.no_grad()
def run_inpainting_batch(
    pipeline: StableDiffusionInpaintPipeline | StableDiffusionXLInpaintPipeline,
    members: Sequence[BatchMember],
    restorers: Sequence[Restorer | None],
) -> list[GenerationResult | BaseException]:
    """Inpaint the images of several jobs denoised together (pipelines/batching.py): one
    outcome per member, in order: its result, or the exception that stopped it. Every
    member's `params` is an `InpaintParams`; they share the canvas size, steps, strength
    and guidance scale (the batch rule, task_table.py); their images, masks, prompts,
    seeds and restorers are their own.
    """
    jobs = [cast(InpaintParams, member.params) for member in members]
    first = jobs[0]
    outcomes: list[GenerationResult | BaseException | None] = [None] * len(members)

    # Step 1: the canvas the model runs on: whole latent pixels.
    canvases = [pad_to_latent_grid(params.image, params.mask) for params in jobs]

    # Step 2: encode each job's prompts once for all its images, without truncation.
    encoded = [encode_prompts(pipeline, params) for params in jobs]

    # Prompts of different lengths cannot share a tensor: one pipeline call per length.
    for group in equal_shape_groups([encoding for encoding, _ in encoded]):
        batch = DenoisingBatch(
            pipeline, [members[i] for i in group], [encoded[i][0] for i in group]
        )
        # One canvas and mask per image: each image's generator encodes its own copy
        # (the VAE samples), so every image draws from its generator exactly what the
        # one-image job with its seed draws.
        images = batch.per_row([canvases[i][0] for i in group])
        masks = batch.per_row([mask_to_image(canvases[i][1]) for i in group])

        # Step 3: denoise every image of the group together, reporting every step.
        latents = batch.denoise(
            pipeline,
            image=images,
            mask_image=masks,
            height=images[0].height,
            width=images[0].width,
            strength=first.strength,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance_scale,
        )
        for index, error in batch.stopped.items():
            outcomes[group[index]] = error

        # Steps 4 and 5, per job: decode, crop, composite, restore.
        for index, rows in batch.live_rows(latents) if latents is not None else []:
            member = group[index]
            started = time.perf_counter()
            generated = decode_latents(pipeline, rows, batch.member_generators(index)[0])
            finished_images = [
                finish_inpainted(image, jobs[member], seed, restorers[member])
                for image, seed in zip(generated, jobs[member].seeds, strict=True)
            ]
            encoding, encode_s = encoded[member]
            restorer = restorers[member]
            outcomes[member] = GenerationResult(
                images=finished_images,
                seeds=jobs[member].seeds,
                params=jobs[member],
                prompt_tokens=encoding.prompt_tokens,
                chunks=encoding.chunks,
                encode_s=encode_s,
                denoise_s=batch.denoise_s,
                decode_s=time.perf_counter() - started,
                restore_used=restorer.name if restorer is not None else "",
                batch_size=batch.size,
            )
    return finished(outcomes)


def finish_inpainted(
    generated: Image.Image, params: InpaintParams, seed: int, restorer: Restorer | None
) -> Image.Image:
    """One decoded image made the job's result: the padding cropped off, the input's
    pixels put back outside the mask, and the generated region restored against the kept
    one, inside the mask only (when a restorer is given)."""
    generated = generated.crop((0, 0, params.width, params.height))
    pixels = composite(generated, params.image, params.mask)
    if restorer is not None:
        pixels = restorer.restore(pixels, np.asarray(params.image), params.mask, seed)
    return Image.fromarray(pixels)
