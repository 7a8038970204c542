"""Input images of image tasks: checked up front, stored once, passed by id.

Shared by every task module (tasks/<task>.py) and so by `POST /v1/images` and
`POST /v1/chat`. Everything a worker would reject is rejected first, with a 4xx naming the
field: an unknown image id (404), an image over the upload limits (413/422), a mask of
another size or one that selects nothing (422). Checking stores nothing; `store()` then
puts the inline images into the blob store, once, when the job is about to be queued.

The mask rule is the worker's too, written once in services/common/image_rules.py (Pillow
alone: the gateway loads neither numpy-based worker code nor any ML framework): an image
with an alpha channel that is transparent somewhere regenerates where alpha is below 0.5;
otherwise white (luminance at or above 0.5 of full scale) = regenerate.

The mllm sees "the masked image" as LLMGA does: the image with the region to generate
painted black (inpaint), or the extended canvas with a black border (outpaint).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from PIL import Image

from services.common.contract import Control, Edit, GenerationRequest, Outpaint
from services.common.image_rules import (
    mask_selection,
    side_within,
)
from services.gateway.http.errors import invalid, not_found
from services.gateway.protocol import ImageInput
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
    stored_id: str | None  # None: inline, stored by the inputs' `store`


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
class MaskedInputs:
    """Checked inputs of an inpaint or outpaint job (tasks/inpaint.py, tasks/outpaint.py):
    the image, the mask or the extension, and the masked image the mllm sees."""

    image: CheckedImage
    mask: CheckedImage | None
    outpaint: Outpaint | None
    strength: float | None
    preview: Image.Image = field(repr=False)
    restore: bool | None = None  # None: the worker's default (on)
    output_size: tuple[int, int] | None = None  # the input image's, plus any extension
    source_caption: str | None = None

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


def check_image_sides(state: GatewayState, image: Image.Image, field_name: str) -> None:
    """422 naming `field_name` unless both sides are within LLMGA_MIN_SIZE..LLMGA_MAX_SIZE
    (an input whose output has its size)."""
    low, high = state.settings.min_size, state.settings.max_size
    for name, side in (("the image's width", image.width), ("the image's height", image.height)):
        check_side(name, side, low, high, field_name)


def check_side(name: str, side: int, low: int, high: int, field_name: str) -> None:
    """422 naming `field_name` unless `side` (called `name`) is within `low`..`high`."""
    if not side_within(side, low, high):
        raise invalid(
            f"{field_name}: {name} is {side}; it must be between {low} and {high}", field_name
        )
