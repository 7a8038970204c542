"""Logic of the conversations area."""

from __future__ import annotations

from typing import cast

from services.common.contract import task_name
from services.gateway.conversations.lineage import known_image_ids, produced_images
from services.gateway.conversations.protocol import (
    ConversationList,
    ConversationSummary,
    ConversationView,
    LineageStep,
    TurnView,
)
from services.gateway.http.errors import ApiError, not_found
from services.gateway.protocol import TaskName
from services.gateway.state import GatewayState
from services.gateway.stores.conversations import StoredConversation
from services.gateway.stores.listing import read_page

TITLE_CHARS = 80


def conversation_summary(conversation: StoredConversation) -> ConversationSummary:
    """The listing's view of a conversation."""
    first = next((turn.text for turn in conversation.turns if turn.role == "user"), "")
    return ConversationSummary(
        id=conversation.id,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        turn_count=len(conversation.turns),
        title=first[:TITLE_CHARS],
    )


async def list_conversations(
    state: GatewayState, tenant: str, *, limit: int, cursor: str | None
) -> ConversationList:
    """A page of the tenant's conversations, latest update first (stores/listing.py)."""
    page = await read_page(
        state.redis,
        kind="conversations",
        index=state.keys.conversation_index(tenant),
        record_key=lambda conversation_id: state.keys.conversation(tenant, conversation_id),
        parse=lambda data: conversation_summary(StoredConversation.model_validate_json(data)),
        limit=limit,
        cursor=cursor,
    )
    return ConversationList(data=page.items, next_cursor=page.next_cursor)


async def image_lineage(
    state: GatewayState, tenant: str, conversation: StoredConversation, image_id: str
) -> list[LineageStep]:
    """The chain of `image_id` back to the first turn (see conversations/lineage.py);
    404 naming `image_id` if the conversation neither made nor used that image."""
    produced = await produced_images(state, tenant, conversation)
    if image_id not in produced and image_id not in known_image_ids(conversation):
        raise ApiError(
            404,
            "not_found",
            f"image_id: image {image_id!r} is not part of conversation {conversation.id!r}",
            "image_id",
        )
    steps: list[LineageStep] = []
    current: str | None = image_id
    seen: set[str] = set()
    while current is not None and current not in seen:
        seen.add(current)
        made = produced.get(current)
        if made is None:  # an upload (the root), or made by an expired job
            steps.append(
                LineageStep(
                    image_id=current,
                    job_id=None,
                    task=None,
                    source_image_id=None,
                    turn_index=None,
                )
            )
            break
        request = made.record.request
        source = request.input_image_ids[0] if request.input_image_ids else None
        steps.append(
            LineageStep(
                image_id=current,
                job_id=request.job_id,
                task=cast(TaskName, task_name(request.task)),
                source_image_id=source,
                turn_index=made.turn_index,
            )
        )
        current = source
    return steps


async def get_conversation(
    state: GatewayState, tenant: str, conversation_id: str, image_id: str | None = None
) -> ConversationView:
    """The conversation's turns (with `image_id`: also that image's lineage); 404 if
    unknown or expired."""
    stored = await state.conversations.get(tenant, conversation_id)
    if stored is None:
        raise not_found(f"conversation {conversation_id!r} not found")
    lineage = await image_lineage(state, tenant, stored, image_id) if image_id is not None else None
    return ConversationView(
        id=stored.id,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
        lineage=lineage,
        turns=[
            TurnView(
                role=turn.role,
                text=turn.text,
                image_ids=turn.image_ids,
                generation_prompts=turn.generation_prompts,
                job_ids=turn.job_ids,
                source_image_id=turn.source_image_id,
                created_at=turn.created_at,
            )
            for turn in stored.turns
        ],
    )


async def delete_conversation(state: GatewayState, tenant: str, conversation_id: str) -> None:
    """Delete the conversation, the records of the jobs it started with their result
    images, and the uploads only its turns used; 404 if unknown. A job still queued is
    never started and a running one stops at its next step (its record is gone)."""
    deleted = await state.conversations.delete_releasing(tenant, conversation_id)
    if deleted is None:
        raise not_found(f"conversation {conversation_id!r} not found")
    conversation, released = deleted
    # Redis blobs are gone already (the release script); other stores delete them here.
    for image_id in released:
        await state.blobs.delete(tenant, image_id)
    for job_id in {job_id for turn in conversation.turns for job_id in turn.job_ids}:
        record = await state.jobs.delete(tenant, job_id)
        if record is not None and record.images:
            # Result images belong to their job alone (the worker stores them per job).
            await state.blobs.delete_many(tenant, [image.image_id for image in record.images])
