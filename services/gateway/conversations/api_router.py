"""Routes of the conversations area."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from services.gateway.conversations.protocol import ConversationView
from services.gateway.conversations.serving import get_conversation
from services.gateway.protocol import ErrorResponse
from services.gateway.state import GatewayState, get_state, get_tenant

router = APIRouter(tags=["conversations"])


@router.get(
    "/v1/conversations/{conversation_id}",
    response_model=ConversationView,
    responses={404: {"model": ErrorResponse, "description": "Unknown or expired."}},
)
def read_conversation(
    conversation_id: str,
    state: Annotated[GatewayState, Depends(get_state)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> ConversationView:
    """All turns of a conversation, oldest first."""
    return get_conversation(state, tenant, conversation_id)
