"""Input images of inpaint and outpaint jobs: checked up front, stored once, passed by id.

Shared by `POST /v1/images` and `POST /v1/chat`. Everything a worker would reject is
rejected here first, with a 4xx naming the field: an unknown image id (404), an image over
the upload limits (413/422), a mask of another size or one that selects nothing, an
outpaint extension whose canvas is too large (422). Checking stores nothing; `store()`
then puts the inline images into the blob store, once, when the job is about to be queued.

The mask rule is the worker's (services/worker/masks.py), written here with Pillow alone
because the gateway loads neither numpy-based worker code nor any ML framework:

- an image with an alpha channel that is transparent somewhere: regenerate where alpha is
  below 0.5 (colour ignored);
- otherwise white = regenerate: luminance at or above 0.5 of full scale.

The mllm sees "the masked image" as LLMGA does: the image with the region to generate
painted black (inpaint), or the extended canvas with a black border (outpaint).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

from services.common.contract import GenerationRequest, Outpaint, Task
from services.gateway.errors import invalid, not_found
from services.gateway.protocol import ImageInput, OutpaintInput
from services.gateway.uploads import check_image, decode_image

if TYPE_CHECKING:
    from services.gateway.state import GatewayState

# The binarization threshold of masks as 8-bit values: v / 255 >= 0.5  <=>  v >= 127.5.
_HALF_SCALE = 127.5
# The image shown to the mllm is shrunk to this longest side (LLaVA sees 336 px anyway);
# smaller images are sent as they are.
PREVIEW_MAX_SIDE = 1024

NO_PIXEL_SELECTED = (
    "the mask selects no pixel to regenerate; white = regenerate (or transparent alpha)"
)


@dataclass(frozen=True)
class CheckedImage:
    """An input image that passed the limits: its pixels, and its blob id once stored."""

    image: Image.Image
    png: bytes
    stored_id: str | None  # None: inline, stored by `PreparedInputs.store`


@dataclass(frozen=True)
class TaskInputs:
    """What an inpaint or outpaint job carries besides its prompt (ids, never pixels)."""

    input_image_ids: list[str]
    mask_image_id: str = ""
    outpaint: Outpaint | None = None
    strength: float | None = None

    def apply_to(self, request: GenerationRequest) -> None:
        """Fill these inputs into a job's request."""
        request.input_image_ids.extend(self.input_image_ids)
        request.mask_image_id = self.mask_image_id
        if self.outpaint is not None:
            request.outpaint.CopyFrom(self.outpaint)
        if self.strength is not None:
            request.strength = self.strength


@dataclass(frozen=True)
class PreparedInputs:
    """Checked inputs of one inpaint/outpaint request, not stored yet."""

    task: int
    image: CheckedImage
    mask: CheckedImage | None
    outpaint: Outpaint | None
    strength: float | None
    preview: Image.Image = field(repr=False)  # the masked image the mllm sees

    def preview_data_uri(self) -> str:
        """The masked image as a PNG data URI (an OpenAI `image_url`)."""
        return png_data_uri(self.preview)

    def store(self, state: GatewayState, tenant: str) -> TaskInputs:
        """Store the inline images (once) and return the job's inputs by id."""
        image_id = _stored_id(state, tenant, self.image)
        mask_id = _stored_id(state, tenant, self.mask) if self.mask is not None else ""
        return TaskInputs(
            input_image_ids=[image_id],
            mask_image_id=mask_id,
            outpaint=self.outpaint,
            strength=self.strength,
        )


def _stored_id(state: GatewayState, tenant: str, checked: CheckedImage) -> str:
    if checked.stored_id is not None:
        return checked.stored_id
    return state.blobs.put(tenant, checked.png, "image/png")


def png_data_uri(image: Image.Image) -> str:
    """`image` (shrunk to PREVIEW_MAX_SIDE) as a `data:image/png;base64,` URI."""
    if max(image.size) > PREVIEW_MAX_SIDE:
        image = image.copy()
        image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def load_input_image(
    state: GatewayState, tenant: str, value: ImageInput, field_name: str
) -> CheckedImage:
    """Decode and check an inline image, or fetch a stored one (404 naming the field).
    Stores nothing."""
    limits = state.image_limits
    if value.b64 is not None:
        decoded = decode_image(value.b64, f"{field_name}.b64", limits)
        stored_id = None
    else:
        assert value.id is not None  # ImageInput holds exactly one of the two
        blob = state.blobs.get(tenant, value.id)
        if blob is None:
            raise not_found(f"{field_name}.id: image {value.id!r} not found")
        decoded = check_image(blob.data, f"{field_name}.id", limits)
        stored_id = value.id
    image = Image.open(io.BytesIO(decoded.png))
    image.load()
    return CheckedImage(image=image, png=decoded.png, stored_id=stored_id)


def mask_selection(mask: Image.Image) -> Image.Image:
    """The region a mask image selects, as an "L" image: 255 = regenerate, 0 = keep
    (the rule of the module docstring, identical to the worker's)."""
    if mask.mode == "P" and "transparency" in mask.info:
        mask = mask.convert("RGBA")
    if "A" in mask.getbands():
        alpha = mask.getchannel("A")
        lowest, _ = alpha.getextrema()
        if isinstance(lowest, (int, float)) and lowest < 255:
            return alpha.point(lambda a: 255 if a < _HALF_SCALE else 0)
    return mask.convert("L").point(lambda v: 255 if v >= _HALF_SCALE else 0)


def check_mask(image: Image.Image, mask: Image.Image, field_name: str) -> Image.Image:
    """422 naming `field_name` unless the mask has the image's size and selects at least
    one pixel; returns its selection (see `mask_selection`)."""
    if mask.size != image.size:
        raise invalid(
            f"{field_name}: the mask is {mask.width}x{mask.height} but the image is "
            f"{image.width}x{image.height}; they must be the same size",
            field_name,
        )
    selection = mask_selection(mask)
    if selection.getbbox() is None:
        raise invalid(f"{field_name}: {NO_PIXEL_SELECTED}", field_name)
    return selection


def outpaint_message(spec: OutpaintInput) -> Outpaint:
    """The contract's Outpaint message for a checked OutpaintInput."""
    if spec.ratio is not None:
        return Outpaint(ratio=spec.ratio)
    return Outpaint(left=spec.left, top=spec.top, right=spec.right, bottom=spec.bottom)


def outpaint_sides(outpaint: Outpaint, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels added to an image of `size` (width, height).
    A ratio is read back from the message (a float32), so the rounding is the worker's."""
    if outpaint.ratio:
        dx, dy = round(outpaint.ratio * size[0]), round(outpaint.ratio * size[1])
        return dx, dy, dx, dy
    return outpaint.left, outpaint.top, outpaint.right, outpaint.bottom


# Tasks the gateway serves, by API name; the others answer 501.
SERVED_TASKS: dict[str, int] = {
    "t2i": Task.TASK_T2I,
    "inpaint": Task.TASK_INPAINT,
    "outpaint": Task.TASK_OUTPAINT,
}
_IMAGE_TASKS = ("inpaint", "outpaint")


def check_task_fields(
    task: str,
    *,
    image_field: str,
    has_image: bool,
    mask: ImageInput | None,
    outpaint: OutpaintInput | None,
    strength: float | None,
    width: int | None,
    height: int | None,
) -> None:
    """422 naming the field when the task-specific fields do not fit `task`: inpaint
    needs an image and a mask, outpaint an image and `outpaint`; both take their size from
    the image (no width/height); `mask`, `outpaint` and `strength` belong to them only."""
    if mask is not None and task != "inpaint":
        raise invalid(f"mask is only for task 'inpaint', not {task!r}", "mask")
    if outpaint is not None and task != "outpaint":
        raise invalid(f"outpaint is only for task 'outpaint', not {task!r}", "outpaint")
    if task not in _IMAGE_TASKS:
        if strength is not None:
            raise invalid(f"strength is only for inpaint and outpaint, not {task!r}", "strength")
        if task == "t2i" and has_image:
            raise invalid("task 't2i' takes no input image", image_field)
        return
    for name, value in (("width", width), ("height", height)):
        if value is not None:
            raise invalid(
                f"{name} must be omitted for {task}: the output takes the input image's size", name
            )
    if not has_image:
        raise invalid(f"{task} needs an input image", image_field)
    if task == "inpaint" and mask is None:
        raise invalid("inpaint needs a mask (white = regenerate)", "mask")
    if task == "outpaint" and outpaint is None:
        raise invalid("outpaint needs `outpaint` (pixels per side or a ratio)", "outpaint")


def _check_side(name: str, side: int, low: int, high: int, field_name: str) -> None:
    if not low <= side <= high:
        raise invalid(
            f"{field_name}: {name} is {side}; it must be between {low} and {high}", field_name
        )


def prepare_inputs(
    state: GatewayState,
    tenant: str,
    task: int,
    image: ImageInput,
    *,
    mask: ImageInput | None = None,
    outpaint: OutpaintInput | None = None,
    strength: float | None = None,
    image_field: str = "image",
) -> PreparedInputs:
    """Check the inputs of an inpaint (`mask`) or outpaint (`outpaint`) job; 4xx naming
    the field for anything the worker would reject. Stores nothing."""
    settings = state.settings
    low, high = settings.min_size, settings.max_size
    checked = load_input_image(state, tenant, image, image_field)
    rgb = checked.image.convert("RGB")
    if task == Task.TASK_INPAINT:
        if mask is None:
            raise invalid("inpaint needs a mask (white = regenerate)", "mask")
        for name, side in (("the image's width", rgb.width), ("the image's height", rgb.height)):
            _check_side(name, side, low, high, image_field)
        checked_mask = load_input_image(state, tenant, mask, "mask")
        selection = check_mask(rgb, checked_mask.image, "mask")
        preview = Image.composite(Image.new("RGB", rgb.size), rgb, selection)
        return PreparedInputs(task, checked, checked_mask, None, strength, preview)

    if task != Task.TASK_OUTPAINT or outpaint is None:
        raise invalid("outpaint needs `outpaint` (pixels per side or a ratio)", "outpaint")
    message = outpaint_message(outpaint)
    left, top, right, bottom = outpaint_sides(message, rgb.size)
    if not any((left, top, right, bottom)):
        raise invalid(
            f"outpaint: ratio {outpaint.ratio:g} extends no side of a {rgb.width}x{rgb.height} "
            "image by a whole pixel",
            "outpaint",
        )
    width, height = rgb.width + left + right, rgb.height + top + bottom
    for name, side in (("the extended width", width), ("the extended height", height)):
        _check_side(name, side, low, high, "outpaint")
    preview = Image.new("RGB", (width, height))
    preview.paste(rgb, (left, top))
    return PreparedInputs(task, checked, None, message, strength, preview)
