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


def delete_conversation(state: GatewayState, tenant: str, conversation_id: str) -> None:
    """Delete the conversation, the records of the jobs it started with their result
    images, and the uploads only its turns used; 404 if unknown. A job still queued is
    never started and a running one stops at its next step (its record is gone)."""
    conversation = state.conversations.delete(tenant, conversation_id)
    if conversation is None:
        raise not_found(f"conversation {conversation_id!r} not found")
    for job_id in {job_id for turn in conversation.turns for job_id in turn.job_ids}:
        record = state.jobs.delete(tenant, job_id)
        if record is not None and record.images:
            # Result images belong to their job alone (the worker stores them per job).
            state.redis.delete(
                *(state.keys.blob(tenant, image.image_id) for image in record.images)
            )
