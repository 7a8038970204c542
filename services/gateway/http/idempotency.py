"""Idempotent creates: a request with an `Idempotency-Key` header is answered once; a retry
with the same key and the same body gets the same response again (same job ids, same
status), marked `Idempotent-Replayed: true`.

The key is claimed atomically (SET NX) before the request runs, so two concurrent
requests with one key never both create jobs: the second answers 409
`idempotency_in_progress` (with `Retry-After`) while the first runs. Only successful (2xx)
responses are kept, for LLMGA_IDEMPOTENCY_TTL_S; after an error the claim is dropped and
the client may retry with the same key. The same key with another body (or on another
route) answers 409 `idempotency_key_reused`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
import redis.asyncio as aioredis
from fastapi import Depends, Header
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.common.redis_keys import RedisKeys
from services.gateway.http.errors import conflict, invalid

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
# Characters of UUIDs, ULIDs and base64/base64url tokens; no spaces or control characters.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9._:~+/=-]+", re.ASCII)
# Response headers that belong to the answer and are replayed with it.
_REPLAYED_HEADERS = ("location", "preference-applied")

# Compare-and-set on the whole stored value: only the request that claimed a key may
# complete or release it (a claim that expired may have been taken by another request).
_SET_IF_OWNER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class StoredResponse(BaseModel):
    """What is kept under an idempotency key: the request's fingerprint and, once it is
    answered, the response (status_code 0 while the first request still runs)."""

    fingerprint: str
    claim: str = ""
    status_code: int = 0
    body: str = ""
    headers: dict[str, str] = Field(default_factory=dict)


def fingerprint(route: str, body: BaseModel) -> str:
    """A digest of the route and the validated body: the same request in another key
    order or spacing has the same fingerprint."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()


class IdempotencyStore:
    """Claims, completes and releases idempotency keys under the tenant's prefix."""

    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, ttl_s: int, pending_ttl_s: int
    ) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s
        self._pending_ttl_s = pending_ttl_s
        self._set_if_owner = client.register_script(_SET_IF_OWNER)

    async def claim(self, tenant: str, key: str, digest: str) -> tuple[StoredResponse, bool]:
        """Claim `key` for a request with fingerprint `digest`. Returns (entry, claimed):
        the new claim, or the entry another request stored first."""
        redis_key = self._keys.idempotency(tenant, key)
        pending = StoredResponse(fingerprint=digest, claim=secrets.token_hex(8))
        while True:
            # A pending claim expires on its own, so a crashed gateway cannot block the
            # key for the whole TTL.
            # SET NX and GET in one round trip: GET reads what SET NX found, or ours.
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(redis_key, pending.model_dump_json(), nx=True, ex=self._pending_ttl_s)
                pipe.get(redis_key)
                claimed, data = await pipe.execute()
            if claimed:
                return pending, True
            if data is not None:  # else it expired just now: claim again
                return StoredResponse.model_validate_json(data), False

    async def complete(
        self, tenant: str, key: str, claim: StoredResponse, response: Response
    ) -> None:
        """Keep the response of the claimed request for the TTL."""
        headers = {
            name: response.headers[name] for name in _REPLAYED_HEADERS if name in response.headers
        }
        done = StoredResponse(
            fingerprint=claim.fingerprint,
            status_code=response.status_code,
            body=bytes(response.body).decode(),
            headers=headers,
        )
        await self._set_if_owner(
            keys=[self._keys.idempotency(tenant, key)],
            args=[claim.model_dump_json(), done.model_dump_json(), self._ttl_s],
        )

    async def release(self, tenant: str, key: str, claim: StoredResponse) -> None:
        """Drop the claim of a request that failed, so the client may retry the key."""
        await self._set_if_owner(
            keys=[self._keys.idempotency(tenant, key)], args=[claim.model_dump_json(), "", 0]
        )


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description=f"Makes the request safe to retry: 1..{MAX_KEY_CHARS} characters of "
            "A-Z a-z 0-9 . _ : ~ + / = -; the same key and body replay the first response "
            "for LLMGA_IDEMPOTENCY_TTL_S (24 h).",
        ),
    ] = None,
) -> str | None:
    """FastAPI dependency: the request's idempotency key, checked (422 naming the header)."""
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise invalid(f"{HEADER} must be 1..{MAX_KEY_CHARS} characters, not {len(key)}", HEADER)
    if not _KEY_PATTERN.fullmatch(key):
        raise invalid(f"{HEADER} may only hold A-Z a-z 0-9 . _ : ~ + / = -", HEADER)
    return key


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]


async def run_idempotent(
    store: IdempotencyStore,
    tenant: str,
    key: str | None,
    route: str,
    body: BaseModel,
    handle: Callable[[], Awaitable[Response]],
) -> Response:
    """Answer with `handle()` once per key; replay its response for retries of the same
    request (`route` with `body`, see `fingerprint`); 409 for another request under the
    key or while the first still runs. Without a key nothing is stored or digested."""
    if key is None:
        return await handle()
    digest = fingerprint(route, body)
    entry, claimed = await store.claim(tenant, key, digest)
    if not claimed:
        return _answer_existing(entry, digest)
    try:
        response = await handle()
    except BaseException:
        # Shielded: a cancelled request (client gone) must still free its key.
        with anyio.CancelScope(shield=True):
            await store.release(tenant, key, entry)
        raise
    if 200 <= response.status_code < 300:
        await store.complete(tenant, key, entry, response)
    else:
        await store.release(tenant, key, entry)
    return response


def _answer_existing(entry: StoredResponse, digest: str) -> Response:
    """The replayed response, or 409 when the key belongs to another request or the first
    request is still running."""
    if entry.fingerprint != digest:
        raise conflict(
            "idempotency_key_reused",
            f"this {HEADER} was used for a different request; use a new key",
        )
    if not entry.status_code:
        raise conflict(
            "idempotency_in_progress",
            f"a request with this {HEADER} is still running; retry shortly",
            headers={"Retry-After": "1"},
        )
    headers: dict[str, Any] = {**entry.headers, "Idempotent-Replayed": "true"}
    return Response(
        content=entry.body,
        status_code=entry.status_code,
        headers=headers,
        media_type="application/json",
    )
