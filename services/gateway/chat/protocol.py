"""Request and response schemas of `POST /v1/chat`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.gateway.jobs.protocol import JobView
from services.gateway.protocol import GenerationOptions, TaskName


class ImageInput(BaseModel):
    """An input image: inline base64 (or a data URI) or the id of an upload."""

    model_config = ConfigDict(extra="forbid")

    b64: str | None = Field(
        default=None,
        description="Raw base64 or a `data:image/...;base64,` URI; at most "
        "LLMGA_MAX_UPLOAD_BYTES (10 MiB) decoded and LLMGA_MAX_IMAGE_PIXELS (16.7 MP).",
    )
    id: str | None = Field(default=None, description="Id returned by POST /v1/uploads.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageInput:
        if (self.b64 is None) == (self.id is None):
            raise ValueError("give exactly one of 'b64' and 'id'")
        return self


class ChatRequest(GenerationOptions):
    """One user turn. The generation options apply to every job the reply starts."""

    message: str = Field(
        min_length=1,
        description="The user's message: not blank, at most LLMGA_MAX_MESSAGE_CHARS (4000).",
    )
    conversation_id: str | None = Field(
        default=None, description="Continue this conversation; omitted starts a new one."
    )
    task: TaskName | None = Field(
        default=None,
        description="What images the turn may generate: 't2i' (default without images; "
        "the only task served so far), 'similar' (default with images), 'inpaint', "
        "'outpaint', 'edit', 'restore' (501 until implemented).",
    )
    images: list[ImageInput] = Field(
        default_factory=list,
        max_length=4,
        description="Input images (at most 4). Not served yet: a turn with images is 501.",
    )
    stream: bool = Field(
        default=False,
        description="Answer as server-sent events: OpenAI-style `chat.completion.chunk`s "
        "of the visible reply (never the generation prompts), then `event: chat.result` "
        "with the ChatResponse, then `data: [DONE]`. Not combinable with Idempotency-Key.",
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
    usage: UsageView


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
