"""The logic behind the OpenAI routes: request checks, prompt building, response shaping."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.mllm.engine import ChatTurn, Finished, LocalEngine, SamplingParams
from services.mllm.openai.protocol import (
    AssistantMessage,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    DeltaMessage,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
    UsageInfo,
    completion_id,
    now,
)
from services.mllm.settings import MllmSettings

#: Replaces every image part: the local model is text-only and cannot see images.
IMAGE_NOTE = "[an image was attached, but this text-only assistant cannot see it]"
IGNORED_IMAGES_HEADER = "X-LLMGA-Ignored-Images"


class RequestError(Exception):
    """A request the server refuses, answered as an OpenAI error object."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        type: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorResponse(
            error=ErrorInfo(message=message, type=type, param=param, code=code)
        )


@dataclass
class PreparedChat:
    id: str
    created: int
    prompt_ids: list[int]
    params: SamplingParams
    ignored_images: int
    include_usage: bool


def _flatten(message: ChatMessage) -> tuple[str, int]:
    """The message's text, image parts replaced by :data:`IMAGE_NOTE`, and its image count."""
    if message.content is None:
        return "", 0
    if isinstance(message.content, str):
        return message.content, 0
    pieces: list[str] = []
    images = 0
    for part in message.content:
        if part.type == "text":
            pieces.append(part.text)
        else:
            images += 1
            pieces.append(IMAGE_NOTE)
    return "\n".join(pieces), images


class OpenAIServingChat:
    def __init__(
        self, engine: LocalEngine, settings: MllmSettings, root: str | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.model_name = settings.model_name
        self.root = root

    def models(self) -> ModelList:
        card = ModelCard(
            id=self.model_name,
            root=self.root,
            max_model_len=self.settings.max_prompt_tokens + self.settings.max_tokens_limit,
            modalities=["text"],
            capabilities={"vision": False, "image_input": "ignored", "streaming": True, "n": 1},
        )
        return ModelList(data=[card])

    def prepare(self, request: ChatCompletionRequest) -> PreparedChat:
        if request.model is not None and request.model != self.model_name:
            raise RequestError(
                f"The model '{request.model}' does not exist; "
                f"this server serves '{self.model_name}'.",
                status=404,
                param="model",
                type="NotFoundError",
                code="model_not_found",
            )
        turns: list[ChatTurn] = []
        system: list[str] = []
        images = 0
        for message in request.messages:
            text, count = _flatten(message)
            images += count
            if message.role in ("system", "developer"):
                system.append(text)
            else:
                turns.append(ChatTurn(message.role, text))
        if not any(turn.role == "user" for turn in turns):
            raise RequestError(
                "messages must contain at least one 'user' message", param="messages"
            )
        if system:
            turns.insert(0, ChatTurn("system", "\n".join(system)))
        prompt_ids = self.engine.encode(self.engine.render_prompt(turns))
        if len(prompt_ids) > self.settings.max_prompt_tokens:
            raise RequestError(
                f"The prompt is {len(prompt_ids)} tokens long; the limit is "
                f"{self.settings.max_prompt_tokens} tokens.",
                param="messages",
                code="context_length_exceeded",
            )
        max_tokens = request.requested_max_tokens or self.settings.default_max_tokens
        if max_tokens > self.settings.max_tokens_limit:
            raise RequestError(
                f"max_tokens is {max_tokens}; at most {self.settings.max_tokens_limit} "
                "are allowed.",
                param="max_completion_tokens" if request.max_completion_tokens else "max_tokens",
            )
        temperature = request.temperature
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=self.settings.default_temperature if temperature is None else temperature,
            top_p=self.settings.default_top_p if request.top_p is None else request.top_p,
            repetition_penalty=self.settings.repetition_penalty,
            stop=tuple(request.stop_list),
            seed=request.seed,
        )
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return PreparedChat(completion_id(), now(), prompt_ids, params, images, include_usage)

    async def complete(self, chat: PreparedChat) -> ChatCompletionResponse:
        parts: list[str] = []
        finished: Finished | None = None
        async for item in self.engine.generate(chat.prompt_ids, chat.params):
            if isinstance(item, Finished):
                finished = item
            else:
                parts.append(item)
        assert finished is not None
        return ChatCompletionResponse(
            id=chat.id,
            created=chat.created,
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    message=AssistantMessage(content="".join(parts)),
                    finish_reason="length" if finished.finish_reason == "length" else "stop",
                )
            ],
            usage=_usage(finished),
        )

    async def stream(self, chat: PreparedChat) -> AsyncIterator[str]:
        """Server-sent events: a role chunk, content chunks, a finish chunk, ``[DONE]``."""

        def chunk(delta: DeltaMessage, finish: str | None = None) -> str:
            body = ChatCompletionChunk(
                id=chat.id,
                created=chat.created,
                model=self.model_name,
                choices=[
                    ChatCompletionChunkChoice(
                        delta=delta,
                        finish_reason=None
                        if finish is None
                        else ("length" if finish == "length" else "stop"),
                    )
                ],
            )
            data = body.model_dump()
            data["choices"][0]["delta"] = delta.model_dump(exclude_none=True)
            return f"data: {json.dumps(data)}\n\n"

        yield chunk(DeltaMessage(role="assistant", content=""))
        try:
            async for item in self.engine.generate(chat.prompt_ids, chat.params):
                if isinstance(item, Finished):
                    yield chunk(DeltaMessage(), item.finish_reason)
                    if chat.include_usage:
                        usage = ChatCompletionChunk(
                            id=chat.id,
                            created=chat.created,
                            model=self.model_name,
                            choices=[],
                            usage=_usage(item),
                        )
                        yield f"data: {usage.model_dump_json()}\n\n"
                elif item:
                    yield chunk(DeltaMessage(content=item))
        except Exception as error:  # the stream has started: report in band
            body = ErrorResponse(error=ErrorInfo(message=str(error), type="internal_server_error"))
            yield f"data: {json.dumps(body.model_dump())}\n\n"
        yield "data: [DONE]\n\n"


def _usage(finished: Finished) -> UsageInfo:
    return UsageInfo(
        prompt_tokens=finished.prompt_tokens,
        completion_tokens=finished.completion_tokens,
        total_tokens=finished.prompt_tokens + finished.completion_tokens,
    )
