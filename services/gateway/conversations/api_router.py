"""Routes of the conversations area."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from services.gateway.conversations.protocol import ConversationList, ConversationView
from services.gateway.conversations.serving import (
    delete_conversation,
    get_conversation,
    list_conversations,
)
from services.gateway.deps import StateDep, TenantDep
from services.gateway.http.openapi_responses import error, protected
from services.gateway.protocol import DEFAULT_PAGE, Cursor, PageLimit

router = APIRouter(tags=["conversations"])

_INVALID = error("Invalid parameter (named in `field`).")


@router.get(
    "/v1/conversations",
    operation_id="listConversations",
    response_model=ConversationList,
    responses={
        **protected(),
        422: error("A malformed cursor, or a bad limit (named in `field`)."),
    },
)
async def read_conversations(
    state: StateDep,
    tenant: TenantDep,
    limit: PageLimit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> ConversationList:
    """The tenant's conversations (until they expire, LLMGA_CONVERSATION_TTL_S after
    their last turn), the most recently updated first, `limit` per page; follow
    `next_cursor` for the next page. A conversation with a new turn moves to the front:
    a client paging meanwhile may miss it (it is on the first page) but never sees an
    item twice."""
    return await list_conversations(state, tenant, limit=limit, cursor=cursor)


@router.get(
    "/v1/conversations/{conversation_id}",
    operation_id="getConversation",
    response_model=ConversationView,
    responses={
        **protected(),
        404: error("Unknown or expired; or `image_id` not part of the conversation."),
        422: _INVALID,
    },
)
async def read_conversation(
    conversation_id: str,
    state: StateDep,
    tenant: TenantDep,
    image_id: Annotated[
        str | None,
        Query(
            description="Also return this image's lineage: the chain of (image, job, "
            "source image) back to the first turn."
        ),
    ] = None,
) -> ConversationView:
    """All turns of a conversation, oldest first, each with the image it started from
    (`source_image_id`); with `?image_id=` also that image's `lineage`."""
    return await get_conversation(state, tenant, conversation_id, image_id)


@router.delete(
    "/v1/conversations/{conversation_id}",
    operation_id="deleteConversation",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**protected(), 404: error("Unknown or expired."), 422: _INVALID},
)
async def remove_conversation(
    conversation_id: str,
    state: StateDep,
    tenant: TenantDep,
) -> Response:
    """Delete the conversation and what only it refers to: its jobs (queued ones never
    start, running ones stop) with their result images, and images uploaded for its turns
    that no other conversation uses."""
    await delete_conversation(state, tenant, conversation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
