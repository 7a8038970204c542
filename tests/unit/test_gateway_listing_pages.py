"""Cursor pages of a per-tenant index (stores/listing.py) on the test Redis: every item
once, newest first, also when many items share a score or are added while paging; expired
records skipped; malformed cursors refused naming `cursor`."""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest
import redis.asyncio as aioredis

from services.gateway.http.errors import ApiError
from services.gateway.stores.listing import Position, decode_cursor, encode_cursor, read_page
from tests.support.services import REDIS_URL


async def _pages(
    client: aioredis.Redis, prefix: str, limit: int, between_pages: dict[int, dict[str, float]]
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await read_page(
            client,
            kind="things",
            index=f"{prefix}:index",
            record_key=lambda id_: f"{prefix}:thing:{id_}",
            parse=lambda data: data.decode(),
            limit=limit,
            cursor=cursor,
        )
        pages.append(page.items)
        for id_, score in between_pages.get(len(pages), {}).items():
            await client.set(f"{prefix}:thing:{id_}", id_)
            await client.zadd(f"{prefix}:index", {id_: score})
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 500


async def _scenario() -> tuple[list[list[str]], list[str], int]:
    prefix = f"test-listing-{uuid.uuid4().hex}"
    async with aioredis.Redis.from_url(REDIS_URL) as client:
        try:
            expected: list[tuple[float, str]] = []
            # 250 items at one score (ties, more than a batch), 30 older, 30 newer.
            for i in range(250):
                expected.append((1000.0, f"tie{i:03d}"))
            for i in range(30):
                expected.append((float(i), f"old{i:02d}"))
                expected.append((2000.0 + i, f"new{i:02d}"))
            for score, id_ in expected:
                await client.set(f"{prefix}:thing:{id_}", id_)
                await client.zadd(f"{prefix}:index", {id_: score})
            # 5 records expired (their index entries remain).
            gone = [id_ for _, id_ in expected[::60]]
            await client.delete(*(f"{prefix}:thing:{id_}" for id_ in gone))
            order = [id_ for _, id_ in sorted(expected, reverse=True) if id_ not in gone]
            # After the first page, newer items and another tie arrive.
            pages = await _pages(
                client, prefix, 7, {1: {"newest": 5000.0, "tie999": 1000.0, "zzz": 2029.5}}
            )
            left = await client.zcard(f"{prefix}:index")
            return pages, order, left
        finally:
            await client.delete(*[key async for key in client.scan_iter(f"{prefix}:*")])


def test_pages_hold_every_item_once_newest_first() -> None:
    pages, order, left = asyncio.run(_scenario())
    listed = [id_ for page in pages for id_ in page]
    assert all(len(page) == 7 for page in pages[:-1])
    # Items added after the first page ahead of its position are not in later pages; one
    # added behind it (an older score, here a tie of 250) is, in its place.
    assert "newest" not in listed and "zzz" not in listed
    assert listed == _with_tie(order)
    assert left == len(order) + 3  # expired entries pruned, the 3 new ones kept


def _with_tie(order: list[str]) -> list[str]:
    at = order.index("tie249")
    return [*order[:at], "tie999", *order[at:]]


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        encode_cursor("other", Position(1.0, "x")),
        base64.urlsafe_b64encode(b'["things", "nan", "x"]').decode(),
        base64.urlsafe_b64encode(b'["things", 1.0, ""]').decode(),
        base64.urlsafe_b64encode(b'["things", 1' + b"0" * 400 + b', "x"]').decode(),
        base64.urlsafe_b64encode(b'["things", true, "x"]').decode(),
        base64.urlsafe_b64encode(b'"things"').decode(),
    ],
)
def test_malformed_cursors_name_the_field(cursor: str) -> None:
    with pytest.raises(ApiError) as caught:
        decode_cursor("things", cursor)
    assert caught.value.status_code == 422 and caught.value.field == "cursor"


def test_cursors_round_trip() -> None:
    position = Position(1764480000.123456, "job_" + "a" * 32)
    assert decode_cursor("jobs", encode_cursor("jobs", position)) == position
