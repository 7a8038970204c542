"""Routes of the chat area."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from services.gateway.chat.protocol import ChatRequest, ChatResponse
from services.gateway.chat.serving import chat_turn
from services.gateway.protocol import ErrorResponse
from services.gateway.state import GatewayState, get_state, get_tenant

router = APIRouter(tags=["chat"])


@router.post(
    "/v1/chat",
    response_model=ChatResponse,
    responses={
        404: {"model": ErrorResponse, "description": "Unknown conversation_id."},
        413: {"model": ErrorResponse, "description": "Body over LLMGA_MAX_REQUEST_BYTES."},
        422: {"model": ErrorResponse, "description": "Invalid field (named in `field`)."},
        501: {"model": ErrorResponse, "description": "Task or input images not served yet."},
        502: {"model": ErrorResponse, "description": "The mllm gave an unusable answer."},
        503: {"model": ErrorResponse, "description": "The mllm or the job queue is down."},
        504: {"model": ErrorResponse, "description": "The mllm did not answer in time."},
    },
)
def chat(
    request: ChatRequest,
    state: Annotated[GatewayState, Depends(get_state)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> ChatResponse:
    """Send a message to the assistant. Each `<gen_image>` block of its reply starts one
    text-to-image job (poll `GET /v1/jobs/{id}`). Nothing is stored if the mllm fails."""
    return chat_turn(state, tenant, request)
