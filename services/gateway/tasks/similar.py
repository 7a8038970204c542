"""Inputs of similar-image generation: describe the input image, generate from that.

LLMGA's "similar image" task: the mllm sees the image (an OpenAI `image_url` data URI)
with the user's text and writes a detailed description between generation tags; each
description drives a text-to-image job. The job is a plain T2I job of the contract that
also carries the source image in `input_image_ids` (the worker ignores it for T2I), so the
job view shows which image it was made from. The output size defaults to the input
image's, scaled into the gateway's size limits and snapped to a multiple of 8.

Served by `POST /v1/chat` and `POST /v1/images` (`task: "similar"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.contract import Task
from services.gateway.http.errors import ApiError
from services.gateway.mllm.assistant import ask_for_prompts
from services.gateway.mllm.client import ChatMessage
from services.gateway.protocol import ImageInput
from services.gateway.tasks.base import ImageTask, MllmRole, TaskArgs
from services.gateway.tasks.inputs import (
    CheckedImage,
    TaskInputs,
    load_input_image,
    png_data_uri,
    stored_id,
)

if TYPE_CHECKING:
    from services.gateway.state import GatewayState

# The message sent with the image when `POST /v1/images` gets no prompt.
DEFAULT_SIMILAR_MESSAGE = "Please generate a similar image."
_MULTIPLE = 8


def _snap(side: float, low: int, high: int) -> int:
    """`side` rounded down to a multiple of 8, within [low, high] (low rounded up to 8)."""
    floor = -(-low // _MULTIPLE) * _MULTIPLE
    ceiling = high // _MULTIPLE * _MULTIPLE
    return max(floor, min(ceiling, int(side) // _MULTIPLE * _MULTIPLE))


def similar_size(width: int, height: int, low: int, high: int) -> tuple[int, int]:
    """The default output size for an input of `width` x `height`: scaled down (aspect
    kept) so that the longest side is at most `high`, each side then rounded down to a
    multiple of 8 and clamped to [low, high]."""
    scale = min(1.0, high / max(width, height))
    return _snap(width * scale, low, high), _snap(height * scale, low, high)


@dataclass(frozen=True)
class SourceImageInputs:
    """A checked input image that a text-to-image-like job follows (similar: described by
    the mllm; controlnet: its edges steer the job) and the output size to use."""

    image: CheckedImage
    width: int
    height: int
    source_caption: str | None = None

    @property
    def output_size(self) -> tuple[int, int]:
        """The size of the job's output."""
        return self.width, self.height

    async def preview_data_uri(self) -> str:
        """The image as a PNG data URI for the mllm (shrunk like other previews)."""
        return await png_data_uri(self.image.image)


@dataclass(frozen=True)
class SimilarInputs(SourceImageInputs):
    """A checked source image of a similar turn/job and the output size to use."""

    async def store(self, state: GatewayState, tenant: str) -> TaskInputs:
        """Store an inline source image (once); the job records it by id."""
        return TaskInputs(input_image_ids=[await stored_id(state, tenant, self.image)])


def describe_request(image_url: str, text: str | None = None) -> ChatMessage:
    """The user message that asks the mllm to describe an image (a data URI): `text`,
    default DEFAULT_SIMILAR_MESSAGE, with the image."""
    return ChatMessage("user", text or DEFAULT_SIMILAR_MESSAGE, image_urls=(image_url,))


async def describe_image(state: GatewayState, image_url: str, text: str | None = None) -> str:
    """The mllm's description of an image: the first generation prompt of its reply to
    `describe_request(image_url, text)`; 502 if it wrote none. Used by similar (the
    description drives t2i) and edit (the source caption)."""
    _, prompts = await ask_for_prompts(state, [describe_request(image_url, text)])
    if not prompts:
        raise ApiError(
            502, "upstream_error", "the mllm wrote no generation prompt describing the image"
        )
    return prompts[0]


async def sized_source_image(
    state: GatewayState,
    tenant: str,
    image: ImageInput,
    field_name: str,
    width: int | None = None,
    height: int | None = None,
) -> tuple[CheckedImage, int, int]:
    """Check an input image (4xx naming `field_name`; nothing stored) and fix the output
    size: `width`/`height` where given, else the image's (see `similar_size`)."""
    checked = await load_input_image(state, tenant, image, field_name)
    settings = state.settings
    default_w, default_h = similar_size(
        checked.image.width, checked.image.height, settings.min_size, settings.max_size
    )
    return checked, width or default_w, height or default_h


async def prepare(
    state: GatewayState, tenant: str, image: ImageInput, field_name: str, args: TaskArgs
) -> SimilarInputs:
    """The checked source image of a similar job and its output size (`sized_source_image`)."""
    options = args.options
    return SimilarInputs(
        *await sized_source_image(state, tenant, image, field_name, options.width, options.height)
    )


TASK = ImageTask(
    name="similar",
    contract_task=Task.TASK_T2I,
    mllm=MllmRole.DESCRIBES_IMAGE,
    prepare=prepare,
    works_on_latest_image=True,
)
