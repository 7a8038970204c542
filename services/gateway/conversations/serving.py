"""Logic of the conversations area."""

from __future__ import annotations

from services.gateway.conversations.protocol import ConversationView, TurnView
from services.gateway.errors import not_found
from services.gateway.state import GatewayState


def get_conversation(state: GatewayState, tenant: str, conversation_id: str) -> ConversationView:
    """The conversation's turns; 404 if unknown or expired."""
    stored = state.conversations.get(tenant, conversation_id)
    if stored is None:
        raise not_found(f"conversation {conversation_id!r} not found")
    return ConversationView(
        id=stored.id,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
        turns=[
            TurnView(
                role=turn.role,
                text=turn.text,
                image_ids=turn.image_ids,
                generation_prompts=turn.generation_prompts,
                job_ids=turn.job_ids,
                created_at=turn.created_at,
            )
            for turn in stored.turns
        ],
    )
