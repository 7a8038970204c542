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
from services.gateway.http.errors import invalid
from services.gateway.protocol import ImageInput
from services.gateway.tasks.base import ImageTask, MllmRole, TaskArgs
from services.gateway.tasks.inputs import (
    CheckedImage,
    TaskInputs,
    check_image_sides,
    check_mask,
    load_input_image,
    png_data_uri,
    stored_id,
)

if TYPE_CHECKING:
    from services.gateway.state import GatewayState


NEEDS_REFERENCE = "restore needs a reference image (the picture before generation)"
NEEDS_MASK = "restore needs a mask of the generated region (white = generated)"


@dataclass(frozen=True)
class RestoreInputs:
    """The checked generated image, reference and mask of one restore job."""

    image: CheckedImage
    reference: CheckedImage
    mask: CheckedImage
    output_size: tuple[int, int] | None = None  # the image's
    source_caption: str | None = None

    async def preview_data_uri(self) -> str:
        """The generated image (restore never asks the mllm; the protocol's method)."""
        return await png_data_uri(self.image.image)

    async def store(self, state: GatewayState, tenant: str) -> TaskInputs:
        """Store the inline images (once): the job gets [image, reference] and the mask."""
        return TaskInputs(
            input_image_ids=[
                await stored_id(state, tenant, self.image),
                await stored_id(state, tenant, self.reference),
            ],
            mask_image_id=await stored_id(state, tenant, self.mask),
        )


async def prepare(
    state: GatewayState, tenant: str, image: ImageInput, field_name: str, args: TaskArgs
) -> RestoreInputs:
    """Check the three images (4xx naming the field): sides within LLMGA_MIN_SIZE..
    LLMGA_MAX_SIZE, the reference and the mask of the image's size, and a mask that selects
    at least one pixel (white = generated; an empty one would make the job a no-op).
    Nothing stored."""
    if args.reference is None:
        raise invalid(NEEDS_REFERENCE, "reference")
    if args.mask is None:
        raise invalid(NEEDS_MASK, "mask")
    checked = await load_input_image(state, tenant, image, field_name)
    check_image_sides(state, checked.image, field_name)
    checked_reference = await load_input_image(state, tenant, args.reference, "reference")
    ref, gen = checked_reference.image, checked.image
    if ref.size != gen.size:
        raise invalid(
            f"reference: the reference is {ref.width}x{ref.height} but the image is "
            f"{gen.width}x{gen.height}; they must be the same size",
            "reference",
        )
    checked_mask = await load_input_image(state, tenant, args.mask, "mask")
    # Pixel work on images up to LLMGA_MAX_IMAGE_PIXELS: in a worker thread.
    await anyio.to_thread.run_sync(check_mask, gen, checked_mask.image, "mask")
    return RestoreInputs(checked, checked_reference, checked_mask)


TASK = ImageTask(
    name="restore",
    contract_task=Task.TASK_RESTORE,
    mllm=MllmRole.NONE,
    prepare=prepare,
    fields=frozenset({"mask", "reference"}),
    required=(("reference", NEEDS_REFERENCE), ("mask", NEEDS_MASK)),
    single_image="it restores the one image given",
    not_in_chat="task 'restore' is served by POST /v1/images only (no mllm step); inpaint "
    "and outpaint turns restore their result unless restore is false",
)
