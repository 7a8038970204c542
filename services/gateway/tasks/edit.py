"""Inputs of instruction-based editing: the image, its two captions and the edit method.

LLMGA edits an image from two captions. The source caption says what the image shows: the
mllm's description of it, asked as for a similar image (similar.py). The target caption
says what it should show: the mllm's answer to the instruction, its first generation
prompt. The mllm writes the target caption right after the source caption, in one dialogue
(the image and the describe request, its description, then the instruction), so the target
caption rewrites that description instead of inventing a new scene. The edit job then
carries the target caption as its prompt and the source caption, the instruction and the
method in `request.edit`; the worker inverts the image under the source caption and
regenerates it under the target caption.

Served by `POST /v1/images` (`task: "edit"`, captions optional) and `POST /v1/chat`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from services.common.contract import Edit, EditMethod, Task
from services.gateway.http.errors import ApiError
from services.gateway.mllm.assistant import ask_for_prompts
from services.gateway.mllm.client import ChatMessage
from services.gateway.protocol import EditMethodName, ImageInput
from services.gateway.tasks.base import CheckedInputs, ImageTask, MllmRole, TaskArgs
from services.gateway.tasks.inputs import (
    CheckedImage,
    TaskInputs,
    check_image_sides,
    load_input_image,
    png_data_uri,
    stored_id,
)
from services.gateway.tasks.similar import (
    DEFAULT_SIMILAR_MESSAGE,
    describe_image,
    describe_request,
)

if TYPE_CHECKING:
    from services.gateway.state import GatewayState

# The message that asks the mllm for the source caption (the similar-image request: an
# LLMGA model answers it with a description of the image between generation tags).
DESCRIBE_MESSAGE = DEFAULT_SIMILAR_MESSAGE

_METHODS: dict[str, int] = {
    "p2p": EditMethod.EDIT_METHOD_P2P,
    "diffedit": EditMethod.EDIT_METHOD_DIFFEDIT,
}

NO_TARGET_CAPTION = (
    "the mllm wrote no generation prompt answering the instruction, so there is no target "
    "caption to edit towards; rephrase the instruction or give target_caption"
)


def edit_method(name: EditMethodName | None) -> int:
    """The contract's EditMethod for an API name; None: unspecified (the worker's default)."""
    return _METHODS[name] if name is not None else EditMethod.EDIT_METHOD_UNSPECIFIED


@dataclass(frozen=True)
class EditInputs:
    """A checked edit: the image, the instruction, the method and, once known, the source
    caption ("" until the mllm has described the image)."""

    image: CheckedImage
    instruction: str
    method: int
    source_caption: str = ""
    output_size: tuple[int, int] | None = None  # the image's

    async def preview_data_uri(self) -> str:
        """The image as a PNG data URI for the mllm (shrunk like other previews)."""
        return await png_data_uri(self.image.image)

    async def store(self, state: GatewayState, tenant: str) -> TaskInputs:
        """Store an inline image (once); the job gets it by id and the edit's captions."""
        edit = Edit(
            source_caption=self.source_caption,
            instruction=self.instruction,
            method=self.method,  # type: ignore[arg-type]
        )
        return TaskInputs(input_image_ids=[await stored_id(state, tenant, self.image)], edit=edit)


async def prepare(
    state: GatewayState, tenant: str, image: ImageInput, field_name: str, args: TaskArgs
) -> EditInputs:
    """Check the image (4xx naming `field_name`: unknown, over a limit, a side outside
    LLMGA_MIN_SIZE..LLMGA_MAX_SIZE); nothing stored, the mllm not asked yet."""
    checked = await load_input_image(state, tenant, image, field_name)
    check_image_sides(state, checked.image, field_name)
    method = edit_method(args.options.edit_method)
    return EditInputs(checked, args.instruction, method, args.source_caption or "")


def target_caption_messages(
    image_url: str, source_caption: str, instruction: str
) -> list[ChatMessage]:
    """The dialogue whose answer is the target caption: the image with the describe
    request, the source caption as the mllm's answer (in generation tags, as it writes
    them), then the instruction."""
    return [
        describe_request(image_url, DESCRIBE_MESSAGE),
        ChatMessage("assistant", f"<gen_image>{source_caption}</gen_image>"),
        ChatMessage("user", instruction),
    ]


def no_target_caption() -> ApiError:
    """502: the mllm answered the instruction without a generation prompt."""
    return ApiError(502, "upstream_error", NO_TARGET_CAPTION)


async def with_source_caption(state: GatewayState, inputs: CheckedInputs) -> EditInputs:
    """The edit with its source caption: as given, else the mllm's description of the
    image (502 if it wrote none)."""
    assert isinstance(inputs, EditInputs)  # this task's prepare made them
    if inputs.source_caption:
        return inputs
    caption = await describe_image(state, await inputs.preview_data_uri(), DESCRIBE_MESSAGE)
    return replace(inputs, source_caption=caption)


async def target_caption(state: GatewayState, inputs: EditInputs) -> str:
    """The mllm's answer to the instruction right after its description of the image
    (`target_caption_messages`); 502 if it wrote no generation prompt."""
    messages = target_caption_messages(
        await inputs.preview_data_uri(), inputs.source_caption, inputs.instruction
    )
    _, prompts = await ask_for_prompts(state, messages)
    if not prompts:
        raise no_target_caption()
    return prompts[0]


TASK = ImageTask(
    name="edit",
    contract_task=Task.TASK_EDIT,
    mllm=MllmRole.CAPTIONS_IMAGE,
    prepare=prepare,
    fields=frozenset({"edit_method", "source_caption", "target_caption"}),
    single_image="the edit is deterministic (inversion), more images would be copies",
    works_on_latest_image=True,
)
