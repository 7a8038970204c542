"""outpaint: extend the canvas (pixels per side or a ratio) and generate the new border;
the mllm sees the extended canvas with the border black."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from PIL import Image

from services.common.contract import Outpaint, Task
from services.common.image_rules import resolve_extension
from services.gateway.http.errors import invalid
from services.gateway.protocol import ImageInput, OutpaintInput
from services.gateway.tasks.base import ImageTask, MllmRole, TaskArgs
from services.gateway.tasks.inputs import MaskedInputs, check_side, load_input_image

if TYPE_CHECKING:
    from services.gateway.state import GatewayState

NEEDS_EXTENSION = "outpaint needs `outpaint` (pixels per side or a ratio)"


def outpaint_message(spec: OutpaintInput) -> Outpaint:
    """The contract's Outpaint message for a checked OutpaintInput."""
    if spec.ratio is not None:
        return Outpaint(ratio=spec.ratio)
    return Outpaint(left=spec.left, top=spec.top, right=spec.right, bottom=spec.bottom)


def extended_canvas(
    rgb: Image.Image, size: tuple[int, int], offset: tuple[int, int]
) -> Image.Image:
    """`rgb` at `offset` on a black canvas of `size`."""
    canvas = Image.new("RGB", size)
    canvas.paste(rgb, offset)
    return canvas


async def prepare(
    state: GatewayState, tenant: str, image: ImageInput, field_name: str, args: TaskArgs
) -> MaskedInputs:
    """Check the image and the extension: it grows at least one side by a whole pixel,
    and the extended canvas is within the size limits (422 naming `outpaint`). Stores
    nothing."""
    spec = args.options.outpaint
    if spec is None:
        raise invalid(NEEDS_EXTENSION, "outpaint")
    checked = await load_input_image(state, tenant, image, field_name)
    rgb = await anyio.to_thread.run_sync(checked.image.convert, "RGB")
    message = outpaint_message(spec)
    # The ratio is read back from the message (a float32), so the rounding is the worker's.
    try:
        extension = resolve_extension(message, rgb.size)
    except ValueError as error:
        raise invalid(str(error), "outpaint") from None
    width, height = extension.canvas_size(rgb.size)
    low, high = state.settings.min_size, state.settings.max_size
    for name, side in (("the extended width", width), ("the extended height", height)):
        check_side(name, side, low, high, "outpaint")
    preview = await anyio.to_thread.run_sync(
        extended_canvas, rgb, (width, height), (extension.left, extension.top)
    )
    return MaskedInputs(
        image=checked,
        mask=None,
        outpaint=message,
        strength=args.options.strength,
        preview=preview,
        restore=args.options.restore,
    )


TASK = ImageTask(
    name="outpaint",
    contract_task=Task.TASK_OUTPAINT,
    mllm=MllmRole.WRITES_PROMPT,
    prepare=prepare,
    fields=frozenset({"outpaint", "strength", "restore"}),
    required=(("outpaint", NEEDS_EXTENSION),),
    works_on_latest_image=True,
)
