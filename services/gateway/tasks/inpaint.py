"""inpaint: regenerate the region a mask selects; the mllm sees the image with that region
painted black and writes the prompt (or, on POST /v1/images, refines the caller's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from PIL import Image

from services.common.contract import Task
from services.gateway.http.errors import invalid
from services.gateway.protocol import ImageInput
from services.gateway.tasks.base import ImageTask, MllmRole, TaskArgs
from services.gateway.tasks.inputs import (
    MaskedInputs,
    check_image_sides,
    check_mask,
    load_input_image,
)

if TYPE_CHECKING:
    from services.gateway.state import GatewayState

NEEDS_MASK = "inpaint needs a mask (white = regenerate)"


def masked_preview(rgb: Image.Image, mask: Image.Image) -> Image.Image:
    """`rgb` with the region `mask` selects painted black (422 for a mask that does not
    fit, see `check_mask`)."""
    selection = check_mask(rgb, mask, "mask")
    return Image.composite(Image.new("RGB", rgb.size), rgb, selection)


async def prepare(
    state: GatewayState, tenant: str, image: ImageInput, field_name: str, args: TaskArgs
) -> MaskedInputs:
    """Check the image (sides within the size limits) and the mask (the image's size,
    selecting at least one pixel); 4xx naming the field. Stores nothing."""
    if args.mask is None:
        raise invalid(NEEDS_MASK, "mask")
    checked = await load_input_image(state, tenant, image, field_name)
    # Pixel work on images up to LLMGA_MAX_IMAGE_PIXELS runs in worker threads.
    rgb = await anyio.to_thread.run_sync(checked.image.convert, "RGB")
    check_image_sides(state, rgb, field_name)
    mask = await load_input_image(state, tenant, args.mask, "mask")
    preview = await anyio.to_thread.run_sync(masked_preview, rgb, mask.image)
    return MaskedInputs(
        image=checked,
        mask=mask,
        outpaint=None,
        strength=args.options.strength,
        preview=preview,
        restore=args.options.restore,
    )


TASK = ImageTask(
    name="inpaint",
    contract_task=Task.TASK_INPAINT,
    mllm=MllmRole.WRITES_PROMPT,
    prepare=prepare,
    fields=frozenset({"mask", "strength", "restore"}),
    required=(("mask", NEEDS_MASK),),
    works_on_latest_image=True,
)
