"""Restore: a standalone DiffRIR job on an image generated elsewhere.

The request names the generated image (`input_image_ids[0]`), the reference it was
generated from (`input_image_ids[1]`: the preserved pixels are taken from it) and the mask
(`mask_image_id`, white = the generated region). Reads top to bottom:

0. check the inputs (`resolve_restore_params`): same sizes, sides within limits, a mask
   that selects something, no generation fields;
1. restore the masked region against the reference with the worker's restorer (DiffRIR
   when its weights are loaded, else the colour fallback), from the job's seed;
2. report the one pass as the job's one progress step.

Pixels outside the mask come back equal to the reference, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from services.common.contract import GenerationRequest
from services.common.image_rules import side_within
from services.worker.diffrir.network import STRIDE
from services.worker.masks import load_mask
from services.worker.pipelines.common import (
    GenerationResult,
    ProgressCallback,
    ResolvedParams,
    draw_seed,
)
from services.worker.profiles import ModelProfile
from services.worker.restorers import Restorer


@dataclass(frozen=True)
class RestoreParams(ResolvedParams):
    """A restore job: the two images (RGB, same size) and the generated region."""

    generated: Image.Image
    reference: Image.Image
    mask: np.ndarray  # bool (height, width): True = generated

    @property
    def denoise_steps(self) -> int:
        """One restoration pass: the job's progress goes 0/1, then 1/1."""
        return 1


def resolve_restore_params(
    request: GenerationRequest,
    profile: ModelProfile,
    generated: Image.Image,
    reference: Image.Image,
    mask_image: Image.Image,
    draw: Callable[[], int] = draw_seed,
) -> RestoreParams:
    """Check a restore request for its images. Raises ValueError with a message fit for the
    job record when the request is invalid."""
    if request.HasField("restore") and not request.restore:
        raise ValueError("restore is false: a restore job with restoration off does nothing")
    if request.width or request.height or request.steps or request.n > 1:
        raise ValueError(
            "width, height, steps and n must be unset: a restore job returns one image of "
            "the input's size"
        )
    if generated.size != reference.size:
        raise ValueError(
            f"the generated image is {generated.width}x{generated.height} but the reference "
            f"is {reference.width}x{reference.height}; they must be the same size"
        )
    for name, side in (("width", generated.width), ("height", generated.height)):
        # Below one stride, reflect padding to the network's grid is impossible.
        if not side_within(side, STRIDE, profile.max_side):
            raise ValueError(
                f"the image's {name} must be between {STRIDE} and {profile.max_side}, got {side}"
            )
    mask = load_mask(mask_image, generated.size)
    seed = request.seed if request.HasField("seed") else draw()
    return RestoreParams(
        prompt="",
        negative_prompt="",
        width=generated.width,
        height=generated.height,
        steps=0,
        guidance_scale=0.0,
        seed=seed,
        num_images=1,
        generated=generated.convert("RGB"),
        reference=reference.convert("RGB"),
        mask=mask,
    )


def run_restore(
    restorer: Restorer, params: RestoreParams, on_progress: ProgressCallback | None = None
) -> GenerationResult:
    """Restore `params.generated` inside `params.mask` against `params.reference`. The time
    counts as decoding (as restoration after inpainting does)."""
    # Step 1: restore, from the job's seed.
    started = time.perf_counter()
    pixels = restorer.restore(
        np.asarray(params.generated), np.asarray(params.reference), params.mask, params.seed
    )
    decode_s = time.perf_counter() - started

    # Step 2: the one pass is the one step (and the point where a cancel is seen).
    if on_progress is not None:
        on_progress(1, params.total_steps)
    return GenerationResult(
        images=[Image.fromarray(pixels)],
        seeds=params.seeds,
        params=params,
        prompt_tokens=0,
        chunks=0,
        encode_s=0.0,
        denoise_s=0.0,
        decode_s=decode_s,
        restore_used=restorer.name,
    )
