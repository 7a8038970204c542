"""Routes of the chat area."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.gateway.chat.protocol import ChatRequest, ChatResponse
from services.gateway.chat.serving import chat_turn, start_chat_stream
from services.gateway.deps import StateDep, TenantDep
from services.gateway.http.errors import invalid
from services.gateway.http.event_streams import event_stream
from services.gateway.http.idempotency import HEADER, IdempotencyKey, run_idempotent
from services.gateway.http.openapi_responses import (
    error,
    malformed,
    protected,
    too_large,
    upstream_errors,
)
from services.gateway.http.responses import ModelResponse

router = APIRouter(tags=["chat"])


@router.post(
    "/v1/chat",
    operation_id="createChatTurn",
    response_model=ChatResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "With stream=true: chat.completion.chunk events, then "
            "`event: chat.result` (ChatResponse), then `data: [DONE]`.",
        },
        **protected(creates_jobs=True),
        **malformed(),
        404: error("Unknown conversation_id or image id."),
        409: error(
            "Idempotency-Key used for another request, or still in progress; "
            "or (type no_result_image) an image task without `images` in a conversation "
            "none of whose jobs has succeeded yet."
        ),
        **too_large("Body over LLMGA_MAX_REQUEST_BYTES, or an image over LLMGA_MAX_UPLOAD_BYTES."),
        422: error("Invalid field (named in `field`)."),
        **upstream_errors(),
    },
)
async def chat(
    request: ChatRequest,
    state: StateDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Send a message to the assistant. Each `<gen_image>` block of its reply starts one
    job (poll `GET /v1/jobs/{id}`): text-to-image; with `images` + `mask` / `outpaint`
    an inpaint / outpaint job on that image, which the mllm sees masked (holes black);
    with one image alone (similar) a text-to-image job from the mllm's description of it;
    with `task: "edit"` an edit of the image (the mllm's description of it is the source
    caption, each generation prompt a target caption); with `task: "controlnet"` a
    ControlNet job with the image as the control source. In a conversation, image tasks
    without `images` work on the latest result image. Nothing is stored if the mllm fails.
    With an `Idempotency-Key`, a retry returns the first answer instead of a new turn.
    With `stream: true` the visible reply arrives as server-sent events. Whether the turn
    generates at all: `generate`, else an image task, else the router (docs/router.md);
    with a tag-less mllm (LLMGA_MLLM_PROTOCOL=plain) the mllm writes only the prompt of a
    generating turn and no other turn starts a job."""
    if request.stream:
        if idempotency_key is not None:
            # A stream cannot be replayed as it was; a retry would be a second turn.
            raise invalid(f"{HEADER} cannot be combined with stream: true", HEADER)
        return event_stream(await start_chat_stream(state, tenant, request), state.settings)

    async def handle() -> Response:
        return ModelResponse(await chat_turn(state, tenant, request))

    return await run_idempotent(
        state.idempotency, tenant, idempotency_key, "POST /v1/chat", request, handle
    )
