"""Request and response schemas of `POST /v1/chat`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway.jobs.protocol import JobView
from services.gateway.protocol import (
    ImageInput,
    ImageTaskOptions,
    TaskName,
)
from services.gateway.webhooks.protocol import WebhookInput


class ChatRequest(ImageTaskOptions):
    """One user turn. The generation options apply to every job the reply starts."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"message": "Draw a red fox sleeping in the snow, in watercolor.", "seed": 42},
            ]
        }
    )

    message: str = Field(
        min_length=1,
        description="The user's message: not blank, at most LLMGA_MAX_MESSAGE_CHARS (4000).",
    )
    conversation_id: str | None = Field(
        default=None, description="Continue this conversation; omitted starts a new one."
    )
    task: TaskName | None = Field(
        default=None,
        description="What the turn's jobs do; omitted, it follows from the inputs: 't2i' "
        "without images, 'inpaint' with a mask, 'outpaint' with outpaint, 'edit' with "
        "edit_method, 'controlnet' with control, 'similar' with one image alone (the mllm "
        "describes it; each description drives a t2i job). An instruction alone is never "
        "taken for an edit: name 'edit' (the message is the instruction, each generation "
        "prompt a target caption). Named, it must match the inputs (422); 'restore' is "
        "served by POST /v1/images only (422).",
    )
    generate: bool | None = Field(
        default=None,
        description="Whether this turn generates, overriding the router (docs/router.md): "
        "true, it does (an LLMGA reply without generation blocks is asked once more; a "
        "plain-protocol mllm is asked for the prompt); false, it is a text answer and "
        "starts no job (422 with an image task: a named one, mask, outpaint, edit_method "
        "or control). Omitted: a named or input-implied image task generates, otherwise "
        "the router decides (with LLMGA_MLLM_PROTOCOL=plain, or with LLMGA_ROUTER_GUARD) "
        "or the mllm's reply does.",
    )
    images: list[ImageInput] = Field(
        default_factory=list,
        max_length=4,
        description="Input images (at most 4); every image task takes exactly one "
        "(controlnet: the control source). The mllm sees it (inpaint/outpaint: masked, "
        "holes black; outpaint: the extended canvas, border black); the conversation "
        "stores its id, never its pixels. Omitted in a conversation, an image task works "
        "on the first image of the conversation's most recent succeeded job (409 if none "
        "has succeeded yet).",
    )
    mask: ImageInput | None = Field(
        default=None,
        description="inpaint: what to regenerate in images[0], the same size. White = "
        "regenerate (binarized at 0.5), or an RGBA image transparent where to regenerate.",
    )
    stream: bool = Field(
        default=False,
        description="Answer as server-sent events: OpenAI-style `chat.completion.chunk`s "
        "of the visible reply (never the generation prompts), then `event: chat.result` "
        "with the ChatResponse, then `data: [DONE]`. Not combinable with Idempotency-Key.",
    )
    webhook: WebhookInput | None = Field(
        default=None,
        description="POST signed notifications of the state changes of every job this turn "
        "starts (docs/api.md 'Webhooks'); the host must be allow-listed (422 otherwise).",
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        return value


class UsageView(BaseModel):
    """Tokens the mllm used for this turn."""

    prompt_tokens: int
    completion_tokens: int


class ChatResponse(BaseModel):
    """The assistant's answer and the jobs it started (one per generation prompt)."""

    conversation_id: str
    reply: str = Field(description="The reply shown to the user (generation tags removed).")
    generation_prompts: list[str] = Field(
        description="The detailed prompts the model wrote between <gen_image> tags."
    )
    jobs: list[JobView] = Field(description="One queued job per generation prompt.")
    source_image_id: str | None = Field(
        default=None,
        description="Image tasks: the image the turn worked on (given, or the "
        "conversation's latest result); null for t2i.",
    )
    source_caption: str | None = Field(
        default=None,
        description="edit: the mllm's description of the input image (every job's source "
        "caption; the generation prompts are the target captions).",
    )
    usage: UsageView
    finish_reason: str = Field(
        default="stop",
        description="Why the mllm stopped: `stop`, or `length` (the reply hit its token limit).",
    )


class ChunkDelta(BaseModel):
    """New text of the visible reply."""

    role: Literal["assistant"] | None = Field(default=None, description="In the first chunk.")
    content: str | None = Field(default=None, description="The next piece of the reply.")


class ChunkChoice(BaseModel):
    """The one choice of a chunk."""

    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None = Field(
        default=None, description="Why the model stopped (`stop`, `length`); last chunk only."
    )


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed chat turn, shaped like OpenAI's."""

    id: str = Field(description="The same for every chunk of one turn.")
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(description="Unix seconds.")
    model: str
    choices: list[ChunkChoice]
