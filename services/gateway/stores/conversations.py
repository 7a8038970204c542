"""Conversations in Redis: one JSON document per conversation under
`RedisKeys.conversation(tenant, id)`, its TTL refreshed on every turn, and listed in the
tenant's `RedisKeys.conversation_index` (scored by the last update, in the same MULTI).

Uploaded images that turns refer to are counted in a reference set per image
(`RedisKeys.blob_refs`: the ids of the conversations using it), so deleting a conversation
can delete exactly the uploads no other conversation uses.
"""

from __future__ import annotations

import time
from typing import Literal

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from services.common.redis_keys import RedisKeys


class StoredTurn(BaseModel):
    """One turn as stored. Assistant turns keep the raw reply (with its tags) because
    that is what the model produced and what it must see again as history. Both turns of
    a pair carry the image the user turn started from (`source_image_id`)."""

    role: Literal["user", "assistant"]
    text: str
    raw: str = ""
    image_ids: list[str] = Field(default_factory=list)
    generation_prompts: list[str] = Field(default_factory=list)
    job_ids: list[str] = Field(default_factory=list)
    # The image the turn worked on (inpaint, outpaint, similar); None for t2i and chat.
    source_image_id: str | None = None
    created_at: float


class StoredConversation(BaseModel):
    """A conversation document."""

    id: str
    tenant: str
    created_at: float
    updated_at: float
    turns: list[StoredTurn] = Field(default_factory=list)


# Drop one conversation's reference to an image; the last reference deletes the image.
# A script, so a concurrent turn that adds a reference cannot slip in between.
_RELEASE_IMAGE = """
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""


class ConversationStore:
    """Reads conversations and appends turns atomically (WATCH/MULTI).

    Two concurrent turns of one conversation both land: the loser of the race re-reads
    the document and appends again. Over redis.asyncio: only the gateway uses it.
    """

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s
        self._release_image = client.register_script(_RELEASE_IMAGE)

    async def get(self, tenant: str, conversation_id: str) -> StoredConversation | None:
        """The conversation, or None if it is unknown or expired."""
        data = await self._client.get(self._keys.conversation(tenant, conversation_id))
        if data is None:
            return None
        return StoredConversation.model_validate_json(data)

    async def append(
        self, tenant: str, conversation_id: str, turns: list[StoredTurn]
    ) -> StoredConversation:
        """Append `turns`, creating the conversation if it does not exist (a new one, or
        one that expired while its turn was being answered), and refresh the TTL."""
        key = self._keys.conversation(tenant, conversation_id)
        async with self._client.pipeline() as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    data = await pipe.get(key)
                    now = time.time()
                    if data is None:
                        started = turns[0].created_at if turns else now
                        conversation = StoredConversation(
                            id=conversation_id, tenant=tenant, created_at=started, updated_at=now
                        )
                    else:
                        conversation = StoredConversation.model_validate_json(data)
                    conversation.turns.extend(turns)
                    conversation.updated_at = now
                    pipe.multi()
                    pipe.set(key, conversation.model_dump_json(), ex=self._ttl_s)
                    # The tenant's listing: newest update first, as long as its newest.
                    index = self._keys.conversation_index(tenant)
                    pipe.zadd(index, {conversation_id: now})
                    pipe.expire(index, self._ttl_s)
                    # Every reference lives as long as the conversation that holds it.
                    for image_id in {i for turn in turns for i in turn.image_ids}:
                        refs = self._keys.blob_refs(tenant, image_id)
                        pipe.sadd(refs, conversation_id)
                        pipe.expire(refs, self._ttl_s)
                    await pipe.execute()
                    return conversation
                except redis.WatchError:
                    continue

    async def delete(self, tenant: str, conversation_id: str) -> StoredConversation | None:
        """Remove the conversation and return it (None if it is unknown or expired), then
        drop its references to uploaded images, deleting those no other one uses."""
        deleted = await self.delete_releasing(tenant, conversation_id)
        return None if deleted is None else deleted[0]

    async def delete_releasing(
        self, tenant: str, conversation_id: str
    ) -> tuple[StoredConversation, list[str]] | None:
        """`delete`, also returning the ids of the uploads it released (no conversation
        uses them any more): the script deletes them from Redis; a blob store elsewhere
        (S3) deletes them through `AsyncBlobStore.delete`."""
        async with self._client.pipeline() as pipe:
            pipe.getdel(self._keys.conversation(tenant, conversation_id))
            pipe.zrem(self._keys.conversation_index(tenant), conversation_id)
            data, _ = await pipe.execute()
        if data is None:
            return None
        conversation = StoredConversation.model_validate_json(data)
        released = []
        for image_id in sorted({i for turn in conversation.turns for i in turn.image_ids}):
            if await self._release_image(
                keys=[self._keys.blob_refs(tenant, image_id), self._keys.blob(tenant, image_id)],
                args=[conversation_id],
            ):
                released.append(image_id)
        return conversation, released
