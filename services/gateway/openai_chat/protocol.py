"""Schemas of the OpenAI-compatible routes (`POST /v1/chat/completions`, `GET /v1/models`):
OpenAI's shapes, so the `openai` package works unchanged, plus the `llmga` extra field
(conversation, generation prompts, jobs) that OpenAI clients ignore."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.chat.protocol import ChatCompletionChunk
from services.gateway.jobs.protocol import JobView

# The one model id of GET /v1/models: the gateway's chat (the mllm writing generation
# prompts, and the jobs they start), whatever model the mllm serves. Requests may name
# any model: it is echoed, never checked.
MODEL_ID = "llmga"


class TextPart(BaseModel):
    """A text part of a message's content."""

    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    """An image as a `data:image/...;base64,` URI (the gateway fetches no URLs)."""

    url: str
    detail: str | None = Field(default=None, description="Accepted and ignored.")


class ImagePart(BaseModel):
    """An image part of a message's content."""

    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class OpenAIMessage(BaseModel):
    """One message of the exchange: a string, or text and image parts."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, description="Accepted and ignored.")


class ChatCompletionRequest(BaseModel):
    """OpenAI's Chat Completions request. The last message (a user message) is the turn;
    the earlier ones are the history, unless `conversation_id` names a stored conversation.
    Other OpenAI parameters (top_p, stop, user, stream_options, ...) are accepted and
    ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "model": "llmga",
                    "messages": [
                        {"role": "user", "content": "Draw a red fox sleeping in the snow."}
                    ],
                },
            ]
        },
    )

    model: str = Field(default=MODEL_ID, description="Echoed in the answer; any value is accepted.")
    messages: list[OpenAIMessage] = Field(
        min_length=1,
        description="The exchange so far; the last one is the user's turn (text, and at "
        "most one image_url part: a data URI, which makes the turn a 'similar' image turn).",
    )
    stream: bool = Field(
        default=False,
        description="Answer as server-sent `chat.completion.chunk`s, ending in "
        "`data: [DONE]`; the last chunk before it carries `llmga`.",
    )
    max_tokens: int | None = Field(
        default=None, ge=1, description="Accepted; the gateway's decoding settings apply."
    )
    max_completion_tokens: int | None = Field(
        default=None, ge=1, description="Accepted; the gateway's decoding settings apply."
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Accepted; the gateway's decoding settings apply."
    )
    n: Literal[1] = Field(default=1, description="One choice only.")
    conversation_id: str | None = Field(
        default=None,
        description="LLMGA extra: continue this stored conversation (404 if unknown); its "
        "turns are then the history and only the last message is read.",
    )
    generate: bool | None = Field(
        default=None,
        description="LLMGA extra, as on POST /v1/chat: true, the turn generates; false, it "
        "is a text answer and starts no job (with an image, the mllm answers about it). "
        "Omitted: as on POST /v1/chat (docs/router.md). The `openai` package sends it "
        'with `extra_body={"generate": ...}`.',
    )


class LlmgaExtra(BaseModel):
    """The LLMGA side of the turn; OpenAI clients ignore it (`completion.model_extra`)."""

    conversation_id: str = Field(description="The stored conversation this turn joined.")
    generation_prompts: list[str] = Field(
        description="The prompts the model wrote between <gen_image> tags."
    )
    jobs: list[JobView] = Field(description="One queued job per generation prompt.")
    source_image_id: str | None = Field(
        default=None, description="An image turn: the stored id of its image."
    )


class AssistantMessage(BaseModel):
    """The reply shown to the user, without the generation tags."""

    role: Literal["assistant"] = "assistant"
    content: str


class CompletionChoice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: AssistantMessage
    finish_reason: str = Field(description="Why the model stopped (`stop`, `length`).")


class CompletionUsage(BaseModel):
    """Tokens the mllm used for this turn."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """OpenAI's chat completion, plus `llmga`."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(description="Unix seconds.")
    model: str = Field(description="The request's model, echoed.")
    choices: list[CompletionChoice]
    usage: CompletionUsage
    llmga: LlmgaExtra


class ChatCompletionChunkWithJobs(ChatCompletionChunk):
    """A streamed chunk; the last one before `[DONE]` carries `llmga`."""

    llmga: LlmgaExtra | None = None


class ModelCard(BaseModel):
    """A model of `GET /v1/models`."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds (when the gateway started).")
    owned_by: str = "llmga"


class ModelList(BaseModel):
    """`GET /v1/models`: the one model, `llmga`."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIErrorDetail(BaseModel):
    """What went wrong, in OpenAI's shape."""

    message: str
    type: str = Field(
        description="OpenAI's kind: invalid_request_error, authentication_error, "
        "not_found_error, conflict_error, rate_limit_error, server_error."
    )
    param: str | None = Field(default=None, description="The offending request field.")
    code: str | None = Field(
        default=None, description="The gateway's error type (invalid_request, queue_full, ...)."
    )


class OpenAIErrorResponse(BaseModel):
    """The body of every error of the OpenAI-compatible routes."""

    error: OpenAIErrorDetail
