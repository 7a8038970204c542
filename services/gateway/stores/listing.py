"""Newest-first pages of a per-tenant index: a Redis sorted set of ids scored by a time
(`RedisKeys.job_index`, `RedisKeys.conversation_index`), each id naming a record under its
own key with its own TTL.

A page is read in batches from the index (ZREVRANGEBYSCORE), each batch's records in one
MGET; ids whose record is gone (expired) are skipped and removed from the index (pruned
lazily), records the caller's filter refuses are skipped. A page ends after `limit`
matches, or after `scan_budget` index entries (then it may hold fewer than `limit` items
while `next_cursor` is set), or at the end of the index.

The cursor is the position of the last entry examined, (score, id), base64url-encoded with
the index kind: the next page starts strictly after it in the order (score descending,
then id descending, as Redis orders equal scores), so entries added meanwhile (newer, so
before it) neither repeat nor shift items between pages.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import redis.asyncio as aioredis

from services.gateway.http.errors import invalid

T = TypeVar("T")

# Index entries read per round trip, and at most per page.
_BATCH = 100
SCAN_BUDGET = 1000


@dataclass(frozen=True)
class Position:
    """An entry of the index: its score and id."""

    score: float
    id: str


def encode_cursor(kind: str, position: Position) -> str:
    """The opaque cursor of a position in an index of `kind` ("jobs", "conversations")."""
    raw = json.dumps([kind, position.score, position.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> Position:
    """The position a cursor of `kind` names; 422 naming `cursor` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_kind, score, id_ = json.loads(raw)
        if not isinstance(score, int | float) or isinstance(score, bool):
            raise TypeError("score")
        score = float(score)  # OverflowError for a huge integer
    except (binascii.Error, ValueError, TypeError, OverflowError):
        raise invalid("cursor is not a cursor this API returned", "cursor") from None
    if got_kind != kind or not math.isfinite(score) or not isinstance(id_, str) or not id_:
        raise invalid(f"cursor is not a cursor of this list ({kind})", "cursor")
    return Position(score, id_)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _member(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def read_page(
    client: aioredis.Redis,
    *,
    kind: str,
    index: str,
    record_key: Callable[[str], str],
    parse: Callable[[bytes], T | None],
    limit: int,
    cursor: str | None,
    scan_budget: int = SCAN_BUDGET,
) -> Page[T]:
    """Up to `limit` records of `index`, newest first, after `cursor` (None: from the
    newest). `parse` turns a stored record into an item, or None to skip it (a filter)."""
    after = decode_cursor(kind, cursor) if cursor is not None else None
    items: list[T] = []
    examined = 0
    skip_ties = 0  # entries at `after.score` already passed over (all-tie batches)
    while True:
        batch = _BATCH
        max_score: float | str = "+inf" if after is None else after.score
        entries = cast(
            list[tuple[bytes, float]],
            await client.zrevrangebyscore(
                index, max_score, "-inf", start=skip_ties, num=batch, withscores=True
            ),
        )
        if not entries:
            return Page(items, None)
        positions = [Position(float(score), _member(member)) for member, score in entries]
        if after is not None:
            # Equal scores come in descending id order: drop those at or before `after`.
            fresh = [p for p in positions if p.score < after.score or p.id < after.id]
            if not fresh:
                if len(entries) < batch:
                    return Page(items, None)
                skip_ties += len(entries)
                continue
            positions = fresh
        skip_ties = 0
        records = await client.mget([record_key(p.id) for p in positions])
        gone: list[str] = []
        for position, data in zip(positions, records, strict=True):
            examined += 1
            after = position
            if data is None:
                gone.append(position.id)
            else:
                item = parse(cast(bytes, data))
                if item is not None:
                    items.append(item)
            if len(items) == limit or examined >= scan_budget:
                break
        if gone:
            await client.zrem(index, *gone)
        if len(items) == limit or examined >= scan_budget:
            assert after is not None
            more = await _any_after(client, index, after)
            return Page(items, encode_cursor(kind, after) if more else None)
        if len(entries) < batch:
            return Page(items, None)


async def _any_after(client: aioredis.Redis, index: str, after: Position) -> bool:
    """Whether the index holds an entry after `after` in newest-first order."""
    if await client.zcount(index, "-inf", f"({after.score}"):
        return True
    ties = await client.zrangebyscore(index, after.score, after.score)
    return any(_member(member) < after.id for member in ties)
