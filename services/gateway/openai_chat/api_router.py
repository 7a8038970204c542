"""Routes of the OpenAI-compatible area: the `openai` package works unchanged with
`base_url=<gateway>/v1` and an API key as `api_key`. Errors here have OpenAI's body
(openai_chat/errors.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from services.gateway.deps import StateDep, TenantDep
from services.gateway.http.backpressure import require_queue_capacity
from services.gateway.http.event_streams import event_stream
from services.gateway.http.responses import ModelResponse
from services.gateway.openai_chat.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelList,
    OpenAIErrorResponse,
)
from services.gateway.openai_chat.serving import (
    chat_completion,
    model_list,
    start_completion_stream,
)

router = APIRouter(tags=["openai"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": OpenAIErrorResponse, "description": "No valid API key."},
    404: {"model": OpenAIErrorResponse, "description": "Unknown conversation_id."},
    413: {"model": OpenAIErrorResponse, "description": "Body or image over its limit."},
    422: {
        "model": OpenAIErrorResponse,
        "description": "Invalid field (named in `param`); 400 for a malformed body.",
    },
    429: {"model": OpenAIErrorResponse, "description": "Queue full or a limit spent."},
    502: {"model": OpenAIErrorResponse, "description": "The mllm gave an unusable answer."},
    503: {"model": OpenAIErrorResponse, "description": "The mllm or the job queue is down."},
    504: {"model": OpenAIErrorResponse, "description": "The mllm did not answer in time."},
}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    dependencies=[Depends(require_queue_capacity)],
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "With stream=true: chat.completion.chunk events, the last one "
            "with `llmga`, then `data: [DONE]`.",
        },
        **_ERRORS,
    },
)
async def chat_completions(
    request: ChatCompletionRequest, state: StateDep, tenant: TenantDep
) -> Response:
    """OpenAI's Chat Completions: the last (user) message is a `POST /v1/chat` turn, the
    earlier messages its history (or, with the extra field `conversation_id`, the stored
    conversation). The reply is the visible text; `llmga` holds the conversation, the
    generation prompts and one queued job per prompt. An `image_url` part (a data URI)
    in the last message makes it a similar-image turn."""
    if request.stream:
        return event_stream(await start_completion_stream(state, tenant, request), state.settings)
    return ModelResponse(await chat_completion(state, tenant, request))


@router.get("/v1/models", response_model=ModelList, responses={401: _ERRORS[401]})
async def models(_: TenantDep) -> ModelList:
    """The one model, `llmga` (the gateway's chat, whatever model the mllm serves)."""
    return model_list()
