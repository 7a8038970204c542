"""What every image task declares: its facts (`ImageTask`) and the shape of its checked
inputs (`CheckedInputs`). One module per task fills these in; `table.TASKS` lists them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from services.common.image_rules import sized_by_input_image
from services.gateway.protocol import ImageInput, ImageTaskOptions
from services.gateway.tasks.inputs import TaskInputs

if TYPE_CHECKING:
    from services.gateway.state import GatewayState


class MllmRole(Enum):
    """How the mllm takes part in a task's jobs."""

    # chat: each generation prompt of the reply is a job's prompt; POST /v1/images: the
    # caller's prompt, rewritten by the mllm only when `refine` is asked.
    WRITES_PROMPT = "writes_prompt"
    # Its description of the input image is the prompt (similar).
    DESCRIBES_IMAGE = "describes_image"
    # Its description of the input image is the source caption, its answer to the
    # instruction the target caption (edit).
    CAPTIONS_IMAGE = "captions_image"
    # Not asked: the task has no prompt (restore).
    NONE = "none"


@dataclass(frozen=True)
class TaskArgs:
    """What a task's inputs are prepared from, whichever API area received the request."""

    options: ImageTaskOptions  # width, height and the task options (outpaint, control, ...)
    mask: ImageInput | None = None
    reference: ImageInput | None = None
    instruction: str = ""  # edit: POST /v1/images' prompt, the chat turn's message
    source_caption: str | None = None  # edit: given by the caller (POST /v1/images only)


class CheckedInputs(Protocol):
    """A task's inputs after every check, before anything is stored."""

    @property
    def output_size(self) -> tuple[int, int] | None:
        """The (width, height) the inputs fix for the job (similar, controlnet: the
        image's, or the request's); None: the request's or the profile's."""

    @property
    def source_caption(self) -> str | None:
        """edit: what the image shows, once known; None for other tasks."""

    async def preview_data_uri(self) -> str:
        """The image the mllm sees, as a PNG data URI (inpaint: masked, outpaint: the
        extended canvas, others: the image)."""

    async def store(self, state: GatewayState, tenant: str) -> TaskInputs:
        """Store the inline images (once) and return what the job carries, by id."""


Prepare = Callable[["GatewayState", str, ImageInput, str, TaskArgs], Awaitable[CheckedInputs]]


@dataclass(frozen=True)
class ImageTask:
    """One image task of the API: its facts, and how its inputs are checked."""

    name: str
    contract_task: int  # the job the worker runs (similar: a t2i job)
    mllm: MllmRole
    # Checks the input image and the task's fields (4xx naming the field); stores
    # nothing. None: the task takes no input image (t2i).
    prepare: Prepare | None = None
    # Its task-specific request fields (ImageTaskOptions' and the request's own), with
    # the ones it cannot do without and what to tell a caller who left them out.
    fields: frozenset[str] = frozenset()
    required: tuple[tuple[str, str], ...] = ()
    # Why it makes exactly one image ("" when n images are n jobs' worth).
    single_image: str = ""
    # Why chat does not serve it ("" when it does).
    not_in_chat: str = ""
    # In chat without `images`: works on the conversation's latest result image.
    works_on_latest_image: bool = False

    @property
    def sized_by_image(self) -> bool:
        """Whether the output takes the input image's size (no width/height)."""
        return sized_by_input_image(self.contract_task)

    @property
    def takes_prompt(self) -> bool:
        """Whether a caller may give a prompt (restore has none)."""
        return self.mllm is not MllmRole.NONE
