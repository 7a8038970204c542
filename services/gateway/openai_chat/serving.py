"""Logic of the OpenAI-compatible routes: an OpenAI Chat Completions request becomes a
`POST /v1/chat` turn (chat/serving.py: the same checks, mllm call, jobs and stored
turns), and its answer an OpenAI chat completion with the `llmga` extra field.

- The last message is the turn: a user message, its text parts the message and its one
  `image_url` part (a data URI) the turn's image, which makes it a `similar` turn as in
  `POST /v1/chat` with one image. The image alone asks for a similar image.
- The earlier messages are the history (text only, images dropped; system and developer
  messages first, after the gateway's own system prompt), at most
  LLMGA_CHAT_HISTORY_MESSAGES of them; with `conversation_id` the stored conversation is
  the history instead and the earlier messages are not read.
- Every turn is stored in a conversation (a new one without `conversation_id`), so its
  jobs, lineage and `GET /v1/conversations/{id}` work as for `POST /v1/chat`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from typing import Any

from pydantic import ValidationError
from sse_starlette import ServerSentEvent

from services.common.ids import new_id
from services.gateway.chat.protocol import ChatCompletionChunk, ChatRequest, ChatResponse
from services.gateway.chat.serving import (
    StreamStyle,
    chat_turn,
    start_chat_stream,
    trimmed_history,
)
from services.gateway.http.errors import ApiError, invalid
from services.gateway.mllm.client import ChatMessage
from services.gateway.openai_chat.errors import openai_error_body
from services.gateway.openai_chat.protocol import (
    MODEL_ID,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunkWithJobs,
    ChatCompletionRequest,
    CompletionChoice,
    CompletionUsage,
    ImagePart,
    LlmgaExtra,
    ModelCard,
    ModelList,
    OpenAIMessage,
    TextPart,
)
from services.gateway.protocol import ImageInput
from services.gateway.state import GatewayState

# What an image sent without text asks for (LLMGA's similar-image request).
SIMILAR_MESSAGE = "Please generate a similar image."

# `created` of the model: when this process started.
_STARTED = int(time.time())


def model_list() -> ModelList:
    """`GET /v1/models`: the one model, `llmga`."""
    return ModelList(data=[ModelCard(id=MODEL_ID, created=_STARTED)])


def _text(message: OpenAIMessage) -> str:
    """A message's text: the string, or its text parts joined by newlines."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(part.text for part in message.content if isinstance(part, TextPart))


def _history(messages: list[OpenAIMessage], limit: int) -> list[ChatMessage]:
    """The earlier messages as text: system/developer messages first, then the last
    `limit` user/assistant messages (starting with a user message)."""
    system = [
        ChatMessage("system", _text(m)) for m in messages if m.role in ("system", "developer")
    ]
    exchange = [
        ChatMessage(m.role, _text(m))
        for m in messages
        if m.role in ("user", "assistant") and _text(m).strip()
    ]
    return [*system, *trimmed_history(exchange, limit)]


def _turn_image(message: OpenAIMessage, index: int) -> list[ImageInput]:
    """The turn's image parts as inline images (data URIs only)."""
    if not isinstance(message.content, list):
        return []
    images = []
    for j, part in enumerate(message.content):
        if not isinstance(part, ImagePart):
            continue
        url = part.image_url.url
        if not url.startswith("data:"):
            raise invalid(
                "image_url must be a data:image/...;base64, URI (the gateway fetches no URLs)",
                f"messages[{index}].content[{j}].image_url.url",
            )
        images.append(ImageInput(b64=url))
    return images


def chat_request(
    request: ChatCompletionRequest, limit: int
) -> tuple[ChatRequest, list[ChatMessage] | None]:
    """The `POST /v1/chat` turn of an OpenAI request, and its history (None: the stored
    conversation's). 422 naming `messages[i]...` for a turn it cannot be."""
    index = len(request.messages) - 1
    last = request.messages[index]
    if last.role != "user":
        raise invalid(
            f"the last message must be a user message, not {last.role}", f"messages[{index}].role"
        )
    images = _turn_image(last, index)
    text = _text(last)
    if not text.strip():
        if not images:
            raise invalid("the last message has no text", f"messages[{index}].content")
        text = SIMILAR_MESSAGE
    try:
        turn = ChatRequest(
            message=text,
            conversation_id=request.conversation_id,
            images=images,
            generate=request.generate,
            stream=request.stream,
        )
    except ValidationError as error:
        first = error.errors()[0]
        reason = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise invalid(reason, f"messages[{index}].content") from None
    history = None if request.conversation_id else _history(request.messages[:index], limit)
    return turn, history


def _param(field: str | None, index: int) -> str | None:
    """A `POST /v1/chat` field as the OpenAI request names it."""
    if field is None:
        return None
    if field == "message" or field.startswith("images"):
        return f"messages[{index}].content"
    return field


def _extra(answer: ChatResponse) -> LlmgaExtra:
    return LlmgaExtra(
        conversation_id=answer.conversation_id,
        generation_prompts=answer.generation_prompts,
        jobs=answer.jobs,
        source_image_id=answer.source_image_id,
    )


async def chat_completion(
    state: GatewayState, tenant: str, request: ChatCompletionRequest
) -> ChatCompletion:
    """One turn, answered as an OpenAI chat completion."""
    turn, history = chat_request(request, state.settings.chat_history_messages)
    try:
        answer = await chat_turn(state, tenant, turn, history)
    except ApiError as error:
        error.field = _param(error.field, len(request.messages) - 1)
        raise
    usage = answer.usage
    return ChatCompletion(
        id=new_id("chatcmpl"),
        created=int(time.time()),
        model=request.model,
        choices=[
            CompletionChoice(
                message=AssistantMessage(content=answer.reply),
                finish_reason=answer.finish_reason or "stop",
            )
        ],
        usage=CompletionUsage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        ),
        llmga=_extra(answer),
    )


def _closing(last: ChatCompletionChunk, answer: ChatResponse) -> list[ServerSentEvent]:
    """The last chunk (finish_reason) carries `llmga`; `[DONE]` follows."""
    chunk = ChatCompletionChunkWithJobs(**dict(last), llmga=_extra(answer))
    return [ServerSentEvent(data=chunk.model_dump_json(), sep="\n")]


def stream_error(status: int, body: dict[str, Any]) -> ServerSentEvent:
    """A failure after the stream started: `data: {"error": …}` in OpenAI's shape (the
    `openai` package raises APIError on it)."""
    return ServerSentEvent(data=json.dumps(openai_error_body(status, body)), sep="\n")


async def start_completion_stream(
    state: GatewayState, tenant: str, request: ChatCompletionRequest
) -> AsyncGenerator[ServerSentEvent, None]:
    """Check the turn and start the mllm's stream (errors up to here are HTTP errors);
    the events: chunks of the visible reply, the last one with `llmga`, `[DONE]`."""
    turn, history = chat_request(request, state.settings.chat_history_messages)
    style = StreamStyle(model=request.model, closing=_closing, error=stream_error)
    try:
        return await start_chat_stream(state, tenant, turn, history, style)
    except ApiError as error:
        error.field = _param(error.field, len(request.messages) - 1)
        raise
