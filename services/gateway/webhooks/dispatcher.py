"""The webhook dispatcher: delivers the outbox stream's events (at least once, in order
per job) with signed POSTs, retried with exponential backoff and jitter.

How an event travels:

1. The worker (or the gateway, for a cancel) changes a job's status through `JobStore`,
   which appends `OutboxEntry` to the stream `{prefix}:webhooks:outbox` in the same
   transaction (services/common/webhook_outbox.py).
2. Every gateway runs one dispatcher (a background task started with the app). They share
   the consumer group `webhooks`, so each entry goes to one of them (XREADGROUP).
3. The dispatcher POSTs the event, signed per Standard Webhooks with the job's tenant's
   secret(s) (signing.py, tenants.py); a 2xx answer is a delivery. Anything else (another
   status, a timeout, a refused connection) is retried after
   `backoff_delay(attempt)` until `LLMGA_WEBHOOK_MAX_ATTEMPTS`; then the event is moved
   to the capped dead-letter stream `{prefix}:webhooks:dead`.
4. Delivered or given up, the entry is acknowledged and deleted from the outbox
   (XACK + XDEL). Until then it stays pending in the group.

Crash safety: while it works on entries the dispatcher re-claims them for itself every
`reclaim_idle_s / 3` seconds (XCLAIM, which resets their idle time). A dispatcher that dies
stops doing so; once its entries have been idle for `LLMGA_WEBHOOK_RECLAIM_IDLE_S`, any
live dispatcher takes them over (XAUTOCLAIM) and delivers them, so an event is never lost
by a restart, only delivered late, possibly twice: receivers dedupe on the event id.

Order: one dispatcher delivers a job's events one after the other (an event waits for
its predecessors' deliveries, retries included); events of different jobs go out
concurrently. With several gateways a job's events may be delivered by different
dispatchers and arrive out of order; `occurred_at` orders them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import httpx
import redis
import redis.asyncio as aioredis

from services.common.redis_keys import RedisKeys
from services.common.webhook_outbox import OutboxEntry
from services.gateway.http.links import Links, url_signer
from services.gateway.jobs.serving import job_view
from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from services.gateway.webhooks.protocol import WebhookEvent
from services.gateway.webhooks.signing import signed_headers
from services.gateway.webhooks.targets import url_refusal
from services.gateway.webhooks.tenants import tenant_hosts, tenant_secrets

logger = logging.getLogger(__name__)
T = TypeVar("T")

CONSUMER_GROUP = "webhooks"
# Entries read per XREADGROUP, and how long one blocks waiting for new entries.
READ_BATCH = 32
READ_BLOCK_MS = 1000
# Events one dispatcher works on at once (retries waiting included); it reads no more
# until some finish, and the rest wait in the stream for it or another dispatcher.
MAX_IN_FLIGHT = 256
# XREADGROUP's answer: [(stream, [(entry id, fields)])].
ReadAnswer = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]
# The dead-letter stream keeps about this many of the latest given-up events.
DEAD_LETTERS_MAX = 10_000


def backoff_delay(
    attempt: int, base_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): base x 2^(attempt-1),
    capped at `max_s`, then scaled by a random factor in [0.5, 1) so that receivers that
    come back are not hit by every dispatcher's retries at the same instant."""
    ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    return ceiling * (0.5 + rand() / 2)


class WebhookDispatcher:
    """Reads the outbox through the consumer group and delivers its events."""

    def __init__(
        self,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        consumer: str | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._signer = url_signer(settings)
        self._keys = RedisKeys(settings.key_prefix)
        self._stream = self._keys.webhook_outbox()
        # Unique per process: a restarted gateway is a new consumer, and the entries its
        # predecessor left pending are reclaimed like any dead dispatcher's.
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        # No socket timeout: XREADGROUP blocks for READ_BLOCK_MS.
        self._redis = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
        self._http = httpx.AsyncClient(
            timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False
        )
        # The last delivery task of each job: the next event of that job waits for it.
        self._last_of_job: dict[str, asyncio.Task[None]] = {}
        self._in_flight: set[bytes] = set()

    async def run(self) -> None:
        """Deliver until cancelled; survives Redis outages (retries every second)."""
        refresher = asyncio.create_task(self._keep_claims_fresh())
        next_reclaim = 0.0
        group_ready = False
        try:
            while True:
                try:
                    if not group_ready:
                        await self._ensure_group()
                        group_ready = True
                    if time.monotonic() >= next_reclaim:
                        await self._reclaim_abandoned()
                        next_reclaim = time.monotonic() + self._settings.webhook_reclaim_idle_s / 3
                    if len(self._in_flight) >= MAX_IN_FLIGHT:
                        await asyncio.sleep(0.1)
                        continue
                    await self._read_new()
                except redis.RedisError as exc:
                    # Also after a Redis restart without persistence: the group is re-made.
                    logger.warning("webhook outbox unavailable, retrying: %r", exc)
                    group_ready = False
                    await asyncio.sleep(1)
                except Exception:
                    # A bug must not stop every future delivery of this gateway.
                    logger.exception("webhook dispatcher error; continuing")
                    await asyncio.sleep(1)
        finally:
            refresher.cancel()
            tasks = list(self._last_of_job.values())
            for task in tasks:
                task.cancel()
            # Cancelled deliveries stay pending in the group: another dispatcher (or this
            # gateway after its restart) reclaims them.
            await asyncio.gather(refresher, *tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Release the connections (after `run` was cancelled)."""
        await self._http.aclose()
        await self._redis.aclose()

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, CONSUMER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_new(self) -> None:
        answer = await self._redis.xreadgroup(
            CONSUMER_GROUP,
            self.consumer,
            {self._stream: ">"},
            count=READ_BATCH,
            block=READ_BLOCK_MS,
        )
        for _stream, entries in cast(ReadAnswer, answer or []):
            for entry_id, fields in entries:
                self._schedule(entry_id, fields)

    async def _reclaim_abandoned(self) -> None:
        """Take over the entries another dispatcher left idle too long (it died)."""
        idle_ms = int(self._settings.webhook_reclaim_idle_s * 1000)
        start: bytes | str = "0-0"
        while True:
            next_start, entries, *_ = await self._redis.xautoclaim(
                self._stream, CONSUMER_GROUP, self.consumer, idle_ms, start, count=READ_BATCH
            )
            for entry_id, fields in entries:
                if entry_id not in self._in_flight and fields:
                    logger.info("reclaimed webhook event %s", entry_id.decode())
                    self._schedule(entry_id, fields)
            if next_start in (b"0-0", "0-0"):
                return
            start = next_start

    async def _keep_claims_fresh(self) -> None:
        """Reset the idle time of the entries this dispatcher works on, so no other one
        reclaims them while their retries wait."""
        while True:
            await asyncio.sleep(self._settings.webhook_reclaim_idle_s / 3)
            if not self._in_flight:
                continue
            try:
                await self._redis.xclaim(
                    self._stream,
                    CONSUMER_GROUP,
                    self.consumer,
                    0,
                    list(self._in_flight),
                    justid=True,
                )
            except redis.RedisError as exc:
                logger.warning("could not refresh webhook claims: %r", exc)

    def _schedule(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """Deliver the entry after the previous event of the same job."""
        try:
            entry = OutboxEntry.parse(fields)
        except (KeyError, ValueError) as exc:
            logger.error("malformed webhook outbox entry %s: %r", entry_id.decode(), exc)
            entry = None
        job_key = f"{entry.record.request.tenant}/{entry.record.request.job_id}" if entry else ""
        previous = self._last_of_job.get(job_key)
        self._in_flight.add(entry_id)
        task = asyncio.create_task(self._deliver_after(previous, entry_id, entry))
        self._last_of_job[job_key] = task

        def forget(done: asyncio.Task[None]) -> None:
            self._in_flight.discard(entry_id)
            if self._last_of_job.get(job_key) is done:
                del self._last_of_job[job_key]

        task.add_done_callback(forget)

    async def _deliver_after(
        self, previous: asyncio.Task[None] | None, entry_id: bytes, entry: OutboxEntry | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        if entry is None:
            await self._finish(entry_id, dead_letter={"error": b"malformed entry"})
            return
        error = await self._deliver(entry)
        if error is None:
            await self._finish(entry_id)
            return
        self._metrics.webhook_events_failed.inc()
        logger.error(
            "webhook event %s (%s of job %s) given up: %s",
            entry.event_id,
            entry.event,
            entry.record.request.job_id,
            error,
        )
        await self._finish(entry_id, dead_letter={**entry.fields(), "error": error.encode()})

    async def _deliver(self, entry: OutboxEntry) -> str | None:
        """Try the delivery up to the configured attempts; None once delivered, else why
        the last attempt failed."""
        url = entry.record.request.webhook.url
        tenant = entry.record.request.tenant
        # The allow-lists may have changed since the job was created.
        hosts = await self._redis_retried(lambda: tenant_hosts(self._redis, self._keys, tenant))
        refusal = url_refusal(url, self._settings, hosts)
        if refusal is not None:
            return refusal
        try:
            event = WebhookEvent(
                id=entry.event_id,
                event=entry.event,  # type: ignore[arg-type]
                occurred_at=entry.occurred_at,
                job=job_view(
                    entry.record,
                    Links.for_tenant(self._settings, self._signer, entry.record.request.tenant),
                ),
            )
        except ValueError as exc:  # pydantic's ValidationError: a record no API can show
            return f"the event cannot be built: {exc}"
        body = event.model_dump_json().encode()
        error = ""
        for attempt in range(1, self._settings.webhook_max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(
                    backoff_delay(
                        attempt - 1,
                        self._settings.webhook_backoff_base_s,
                        self._settings.webhook_backoff_max_s,
                    )
                )
            error = await self._attempt(url, entry, body, attempt)
            if not error:
                return None
            logger.warning(
                "webhook event %s attempt %d/%d failed: %s",
                entry.event_id,
                attempt,
                self._settings.webhook_max_attempts,
                error,
            )
        return error

    async def _attempt(self, url: str, entry: OutboxEntry, body: bytes, attempt: int) -> str:
        """One signed POST; "" if the receiver answered 2xx, else what went wrong. Signed
        afresh with the tenant's secrets of the moment (a rotation may have happened)."""
        tenant = entry.record.request.tenant
        stored = await self._redis_retried(lambda: tenant_secrets(self._redis, self._keys, tenant))
        secrets = stored.signing(self._settings.webhook_rotation_grace_s)
        try:
            signed = signed_headers(secrets, entry.event_id, body)
        except ValueError as exc:  # a secret edited by hand into something else
            return f"tenant {tenant!r} has a malformed webhook secret: {exc}"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "llmga-webhooks/1",
            "X-LLMGA-Event": entry.event,
            "X-LLMGA-Event-Id": entry.event_id,
            "X-LLMGA-Attempt": str(attempt),
            **signed,
        }
        started = time.perf_counter()
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            outcome, error = "error", f"no answer: {type(exc).__name__}"
        else:
            if response.is_success:
                outcome, error = "delivered", ""
            else:
                outcome, error = "rejected", f"HTTP {response.status_code}"
        self._metrics.webhook_attempt_duration.observe(time.perf_counter() - started)
        self._metrics.webhook_attempts.labels(outcome).inc()
        return error

    async def _redis_retried(self, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`, retried every second while Redis is unavailable (the event stays
        pending meanwhile, as it would while its receiver is down)."""
        while True:
            try:
                return await read()
            except redis.RedisError as exc:
                logger.warning("could not read a tenant's webhook settings: %r", exc)
                await asyncio.sleep(1)

    async def _finish(self, entry_id: bytes, dead_letter: dict[str, bytes] | None = None) -> None:
        """Acknowledge and delete the entry (after copying it to the dead letters)."""
        while True:
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    if dead_letter is not None:
                        pipe.xadd(
                            self._keys.webhook_dead_letters(),
                            dead_letter,  # type: ignore[arg-type]
                            maxlen=DEAD_LETTERS_MAX,
                            approximate=True,
                        )
                    pipe.xack(self._stream, CONSUMER_GROUP, entry_id)
                    pipe.xdel(self._stream, entry_id)
                    await pipe.execute()
                return
            except redis.RedisError as exc:
                # Not acknowledged yet: keep trying, or the event would be sent again.
                logger.warning("could not acknowledge webhook event: %r", exc)
                await asyncio.sleep(1)
