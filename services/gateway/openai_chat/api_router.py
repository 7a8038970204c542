"""Routes of the OpenAI-compatible area: the `openai` package works unchanged with
`base_url=<gateway>/v1` and an API key as `api_key`. Errors here have OpenAI's body
(openai_chat/errors.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from services.gateway.deps import StateDep, TenantDep
from services.gateway.http.backpressure import require_queue_capacity
from services.gateway.http.event_streams import event_stream
from services.gateway.http.openapi_responses import (
    Responses,
    error,
    malformed,
    protected,
    too_large,
    upstream_errors,
)
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

_ERRORS: Responses = {
    **protected(OpenAIErrorResponse, creates_jobs=True),
    **malformed(OpenAIErrorResponse),
    404: error("Unknown conversation_id.", model=OpenAIErrorResponse),
    **too_large("Body or image over its limit.", model=OpenAIErrorResponse),
    422: error("Invalid field (named in `param`).", model=OpenAIErrorResponse),
    **upstream_errors(OpenAIErrorResponse),
}


@router.post(
    "/v1/chat/completions",
    operation_id="createChatCompletion",
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


@router.get(
    "/v1/models",
    operation_id="listModels",
    response_model=ModelList,
    responses=protected(OpenAIErrorResponse),
)
async def models(_: TenantDep) -> ModelList:
    """The one model, `llmga` (the gateway's chat, whatever model the mllm serves)."""
    return model_list()
