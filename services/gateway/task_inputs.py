"""Input images of image jobs: checked up front, stored once, passed by id.

Shared by `POST /v1/images` and `POST /v1/chat`. Which task-specific field fits which task
is checked here (`check_task_fields`), and the inputs of inpaint and outpaint jobs (the
other tasks' live in similar.py, edit.py, controlnet.py, restoration.py). Everything a
worker would reject is rejected first, with a 4xx naming the field: an unknown image id
(404), an image over the upload limits (413/422), a mask of another size or one that
selects nothing, an outpaint extension whose canvas is too large (422). Checking stores
nothing; `store()` then puts the inline images into the blob store, once, when the job is
about to be queued.

The mask rule, the outpaint geometry and which tasks are sized by their input image are
the worker's too, written once in services/common/image_rules.py (Pillow alone: the
gateway loads neither numpy-based worker code nor any ML framework):

- an image with an alpha channel that is transparent somewhere: regenerate where alpha is
  below 0.5 (colour ignored);
- otherwise white = regenerate: luminance at or above 0.5 of full scale.

The mllm sees "the masked image" as LLMGA does: the image with the region to generate
painted black (inpaint), or the extended canvas with a black border (outpaint).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from PIL import Image

from services.common.contract import Control, Edit, GenerationRequest, Outpaint, Task
from services.common.image_rules import (
    mask_selection,
    resolve_extension,
    side_within,
    sized_by_input_image,
)
from services.gateway.errors import invalid, not_found
from services.gateway.protocol import ImageInput, OutpaintInput
from services.gateway.uploads import DecodedImage, ImageLimits, check_image, decode_image

if TYPE_CHECKING:
    from services.gateway.state import GatewayState

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
    """What an image job carries besides its prompt (images by id, never pixels)."""

    input_image_ids: list[str]
    mask_image_id: str = ""
    outpaint: Outpaint | None = None
    strength: float | None = None
    restore: bool | None = None  # inpaint/outpaint; None: the worker's default (on)
    edit: Edit | None = None
    control: Control | None = None

    def apply_to(self, request: GenerationRequest) -> None:
        """Fill these inputs into a job's request."""
        request.input_image_ids.extend(self.input_image_ids)
        request.mask_image_id = self.mask_image_id
        if self.outpaint is not None:
            request.outpaint.CopyFrom(self.outpaint)
        if self.strength is not None:
            request.strength = self.strength
        if self.restore is not None:
            request.restore = self.restore
        if self.edit is not None:
            request.edit.CopyFrom(self.edit)
        if self.control is not None:
            request.control.CopyFrom(self.control)


@dataclass(frozen=True)
class PreparedInputs:
    """Checked inputs of one inpaint/outpaint request, not stored yet."""

    task: int
    image: CheckedImage
    mask: CheckedImage | None
    outpaint: Outpaint | None
    strength: float | None
    preview: Image.Image = field(repr=False)  # the masked image the mllm sees
    restore: bool | None = None

    async def preview_data_uri(self) -> str:
        """The masked image as a PNG data URI (an OpenAI `image_url`)."""
        return await png_data_uri(self.preview)

    async def store(self, state: GatewayState, tenant: str) -> TaskInputs:
        """Store the inline images (once) and return the job's inputs by id."""
        image_id = await stored_id(state, tenant, self.image)
        mask_id = await stored_id(state, tenant, self.mask) if self.mask is not None else ""
        return TaskInputs(
            input_image_ids=[image_id],
            mask_image_id=mask_id,
            outpaint=self.outpaint,
            strength=self.strength,
            restore=self.restore,
        )


async def stored_id(state: GatewayState, tenant: str, checked: CheckedImage) -> str:
    """The blob id of a checked image: its own if it was given by id, else it is stored
    now (as PNG)."""
    if checked.stored_id is not None:
        return checked.stored_id
    return await state.blobs.put(tenant, checked.png, "image/png")


async def png_data_uri(image: Image.Image) -> str:
    """`image` as RGB (shrunk to PREVIEW_MAX_SIDE) as a `data:image/png;base64,` URI;
    converted and encoded in a worker thread (CPU only)."""
    return await anyio.to_thread.run_sync(_png_data_uri, image)


def _png_data_uri(image: Image.Image) -> str:
    image = image.convert("RGB")  # a copy: thumbnail() below must not touch the input
    if max(image.size) > PREVIEW_MAX_SIDE:
        image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


async def load_input_image(
    state: GatewayState, tenant: str, value: ImageInput, field_name: str
) -> CheckedImage:
    """Decode and check an inline image, or fetch a stored one (404 naming the field).
    Stores nothing. Decoding runs in a worker thread: a large image takes the CPU for
    a while, and the event loop keeps serving meanwhile."""
    limits = state.image_limits
    if value.b64 is not None:
        return await anyio.to_thread.run_sync(
            _decode_inline, value.b64, f"{field_name}.b64", limits
        )
    assert value.id is not None  # ImageInput holds exactly one of the two
    blob = await state.blobs.get(tenant, value.id)
    if blob is None:
        raise not_found(f"{field_name}.id: image {value.id!r} not found")
    return await anyio.to_thread.run_sync(
        _decode_stored, blob.data, f"{field_name}.id", limits, value.id
    )


def _decode_inline(b64: str, field_name: str, limits: ImageLimits) -> CheckedImage:
    """An inline (base64) image, checked."""
    return _checked(decode_image(b64, field_name, limits), None)


def _decode_stored(
    data: bytes, field_name: str, limits: ImageLimits, image_id: str
) -> CheckedImage:
    """A stored image, checked against today's limits."""
    return _checked(check_image(data, field_name, limits), image_id)


def _checked(decoded: DecodedImage, image_id: str | None) -> CheckedImage:
    """The pixels of a checked image (`image_id`: its blob id, None if inline)."""
    image = Image.open(io.BytesIO(decoded.png))
    image.load()
    return CheckedImage(image=image, png=decoded.png, stored_id=image_id)


def _masked_preview(rgb: Image.Image, mask: Image.Image) -> Image.Image:
    """The inpaint preview: `rgb` with the region `mask` selects painted black (422 for a
    mask that does not fit, see `check_mask`)."""
    selection = check_mask(rgb, mask, "mask")
    return Image.composite(Image.new("RGB", rgb.size), rgb, selection)


def _extended_canvas(
    rgb: Image.Image, size: tuple[int, int], offset: tuple[int, int]
) -> Image.Image:
    """The outpaint preview: `rgb` at `offset` on a black canvas of `size`."""
    canvas = Image.new("RGB", size)
    canvas.paste(rgb, offset)
    return canvas


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


# Every task of the API by name, with the contract task its jobs run ("similar" is a t2i
# job from the mllm's description of an image).
CONTRACT_TASKS: dict[str, int] = {
    "t2i": Task.TASK_T2I,
    "similar": Task.TASK_T2I,
    "inpaint": Task.TASK_INPAINT,
    "outpaint": Task.TASK_OUTPAINT,
    "edit": Task.TASK_EDIT,
    "restore": Task.TASK_RESTORE,
    "controlnet": Task.TASK_CONTROLNET,
}

# The task-specific request fields and the tasks that take each one.
FIELD_TASKS: dict[str, tuple[str, ...]] = {
    "mask": ("inpaint", "restore"),
    "outpaint": ("outpaint",),
    "strength": ("inpaint", "outpaint"),
    "restore": ("inpaint", "outpaint"),
    "reference": ("restore",),
    "edit_method": ("edit",),
    "source_caption": ("edit",),
    "target_caption": ("edit",),
    "control": ("controlnet",),
}
# Tasks that make exactly one image, and why.
_SINGLE_IMAGE = {
    "edit": "the edit is deterministic (inversion), more images would be copies",
    "restore": "it restores the one image given",
}
# What each task cannot do without besides its image: (field, message).
_REQUIRED_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "inpaint": (("mask", "inpaint needs a mask (white = regenerate)"),),
    "outpaint": (("outpaint", "outpaint needs `outpaint` (pixels per side or a ratio)"),),
    "restore": (
        ("reference", "restore needs a reference image (the picture before generation)"),
        ("mask", "restore needs a mask of the generated region (white = generated)"),
    ),
}


def _quoted(tasks: tuple[str, ...]) -> str:
    """("a", "b") -> "'a' or 'b'"."""
    return " or ".join(repr(task) for task in tasks)


def check_task_fields(
    task: str,
    *,
    image_field: str,
    has_image: bool,
    given: Mapping[str, object],
    width: int | None,
    height: int | None,
    n: int = 1,
) -> None:
    """422 naming the field when the task-specific fields do not fit `task`. `given` maps
    field names of FIELD_TASKS to their values (None: omitted): each belongs to its tasks
    only, and inpaint (mask), outpaint (outpaint) and restore (reference, mask) need theirs.
    Every task but t2i needs an image (t2i takes none); inpaint, outpaint, edit and
    restore take their size from it (no width/height); edit and restore make one image."""
    for name, value in given.items():
        if value is not None and task not in FIELD_TASKS[name]:
            raise invalid(
                f"{name} is only for task {_quoted(FIELD_TASKS[name])}, not {task!r}", name
            )
    if task == "t2i":
        if has_image:
            raise invalid("task 't2i' takes no input image", image_field)
        return
    if sized_by_input_image(CONTRACT_TASKS[task]):
        for name, value in (("width", width), ("height", height)):
            if value is not None:
                raise invalid(
                    f"{name} must be omitted for {task}: the output takes the input image's size",
                    name,
                )
    if task in _SINGLE_IMAGE and n != 1:
        raise invalid(f"n must be 1 for {task}: {_SINGLE_IMAGE[task]}", "n")
    if not has_image:
        raise invalid(f"{task} needs an input image", image_field)
    for name, message in _REQUIRED_FIELDS.get(task, ()):
        if given.get(name) is None:
            raise invalid(message, name)


def check_image_sides(state: GatewayState, image: Image.Image, field_name: str) -> None:
    """422 naming `field_name` unless both sides are within LLMGA_MIN_SIZE..LLMGA_MAX_SIZE
    (an input whose output has its size)."""
    low, high = state.settings.min_size, state.settings.max_size
    for name, side in (("the image's width", image.width), ("the image's height", image.height)):
        _check_side(name, side, low, high, field_name)


def _check_side(name: str, side: int, low: int, high: int, field_name: str) -> None:
    if not side_within(side, low, high):
        raise invalid(
            f"{field_name}: {name} is {side}; it must be between {low} and {high}", field_name
        )


async def prepare_inputs(
    state: GatewayState,
    tenant: str,
    task: int,
    image: ImageInput,
    *,
    mask: ImageInput | None = None,
    outpaint: OutpaintInput | None = None,
    strength: float | None = None,
    restore: bool | None = None,
    image_field: str = "image",
) -> PreparedInputs:
    """Check the inputs of an inpaint (`mask`) or outpaint (`outpaint`) job; 4xx naming
    the field for anything the worker would reject. Stores nothing. `restore` (None: the
    worker's default, on) goes to the job as given."""
    settings = state.settings
    low, high = settings.min_size, settings.max_size
    checked = await load_input_image(state, tenant, image, image_field)
    # Pixel work on images up to LLMGA_MAX_IMAGE_PIXELS runs in worker threads.
    rgb = await anyio.to_thread.run_sync(checked.image.convert, "RGB")
    if task == Task.TASK_INPAINT:
        if mask is None:
            raise invalid("inpaint needs a mask (white = regenerate)", "mask")
        check_image_sides(state, rgb, image_field)
        checked_mask = await load_input_image(state, tenant, mask, "mask")
        preview = await anyio.to_thread.run_sync(_masked_preview, rgb, checked_mask.image)
        return PreparedInputs(task, checked, checked_mask, None, strength, preview, restore)

    if task != Task.TASK_OUTPAINT or outpaint is None:
        raise invalid("outpaint needs `outpaint` (pixels per side or a ratio)", "outpaint")
    message = outpaint_message(outpaint)
    # The ratio is read back from the message (a float32), so the rounding is the worker's.
    try:
        extension = resolve_extension(message, rgb.size)
    except ValueError as error:
        raise invalid(str(error), "outpaint") from None
    width, height = extension.canvas_size(rgb.size)
    for name, side in (("the extended width", width), ("the extended height", height)):
        _check_side(name, side, low, high, "outpaint")
    preview = await anyio.to_thread.run_sync(
        _extended_canvas, rgb, (width, height), (extension.left, extension.top)
    )
    return PreparedInputs(task, checked, None, message, strength, preview, restore)
