"""Inputs of restore jobs: a generated image, the reference it came from, and the mask of
the generated region.

LLMGA restores in/outpainted images with DiffRIR: the generated region is corrected
against the kept one (colour, texture, brightness), and everything outside the mask comes
back as the reference exactly. `POST /v1/images` with `task: "restore"` runs that step
alone (inpaint and outpaint run it themselves unless `restore: false`). No prompt and no
mllm: the three images must have one size (422 naming both sizes otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from services.common.contract import Task
from services.gateway.errors import invalid
from services.gateway.protocol import ImageInput
from services.gateway.task_inputs import (
    CheckedImage,
    TaskInputs,
    check_image_sides,
    check_mask,
    load_input_image,
    stored_id,
)

if TYPE_CHECKING:
    from services.gateway.state import GatewayState


@dataclass(frozen=True)
class RestoreInputs:
    """The checked generated image, reference and mask of one restore job."""

    image: CheckedImage
    reference: CheckedImage
    mask: CheckedImage
    task: int = Task.TASK_RESTORE

    async def store(self, state: GatewayState, tenant: str) -> TaskInputs:
        """Store the inline images (once): the job gets [image, reference] and the mask."""
        return TaskInputs(
            input_image_ids=[
                await stored_id(state, tenant, self.image),
                await stored_id(state, tenant, self.reference),
            ],
            mask_image_id=await stored_id(state, tenant, self.mask),
        )


async def prepare_restore(
    state: GatewayState,
    tenant: str,
    image: ImageInput,
    reference: ImageInput,
    mask: ImageInput,
) -> RestoreInputs:
    """Check the three images (4xx naming the field): sides within LLMGA_MIN_SIZE..
    LLMGA_MAX_SIZE, the reference and the mask of the image's size, and a mask that selects
    at least one pixel (white = generated; an empty one would make the job a no-op).
    Nothing stored."""
    checked = await load_input_image(state, tenant, image, "image")
    check_image_sides(state, checked.image, "image")
    checked_reference = await load_input_image(state, tenant, reference, "reference")
    ref, gen = checked_reference.image, checked.image
    if ref.size != gen.size:
        raise invalid(
            f"reference: the reference is {ref.width}x{ref.height} but the image is "
            f"{gen.width}x{gen.height}; they must be the same size",
            "reference",
        )
    checked_mask = await load_input_image(state, tenant, mask, "mask")
    # Pixel work on images up to LLMGA_MAX_IMAGE_PIXELS: in a worker thread.
    await anyio.to_thread.run_sync(check_mask, gen, checked_mask.image, "mask")
    return RestoreInputs(checked, checked_reference, checked_mask)
