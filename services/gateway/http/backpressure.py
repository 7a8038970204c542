"""Backpressure: refuse new jobs with 429 while the generation queue is full.

The queue depth is read from the broker itself (kombu's Redis transport), so it counts
every job a worker still has to finish, whoever submitted it:

- messages waiting in the queue's Redis list (`LLEN <queue>`), and
- messages delivered to a worker but not yet acknowledged (kombu's `unacked` hash, whose
  values are `[message, exchange, routing_key]`): with `acks_late` a running job's
  message stays there until the job ends, and it leaves the list when it is delivered,
- jobs held back by the per-tenant cap (services/common/tenant_slots.py): not in the
  queue yet, but waiting all the same, so autoscaling sees the whole backlog.

The check runs before anything is written or sent to the mllm, so a refused request
changes nothing and the client retries after `Retry-After`. When the broker cannot be
read the check lets the request through (fail open; sending the job then fails with
503). It is a soft limit: the depth is read at most every LLMGA_QUEUE_DEPTH_REFRESH_S
(one read shared by every request checking meanwhile, so a burst costs one round trip,
not one per request), and this process adds the requests it admitted since. Other
gateway processes' admissions in that window are not seen, and a chat turn admitted
counts as one job whatever its reply holds, until the next read. Accepted jobs are never
dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from fastapi import Request

from services.common.tenant_slots import AsyncTenantSlots
from services.gateway.http.errors import ApiError

logger = logging.getLogger(__name__)

# kombu's Redis transport defaults (`unacked_key`); neither the gateway nor the worker
# changes it.
UNACKED_KEY = "unacked"
# Messages ahead of each job's (ARGV) in the queue's list (KEYS[1]), -1 if it is not in
# it: the task id (= the job id) is in a message's plain-JSON headers, and ids are 128
# random bits, so a plain substring match finds exactly its message.
_POSITIONS = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local result, left = {}, #ARGV
for j = 1, #ARGV do result[j] = -1 end
for i = #items, 1, -1 do
  for j = 1, #ARGV do
    if result[j] == -1 and string.find(items[i], ARGV[j], 1, true) then
      result[j] = #items - i
      left = left - 1
    end
  end
  if left == 0 then break end
end
return result
"""

# Entries of `unacked` read per HSCAN round trip.
_SCAN_PAGE = 500

# The routes that create jobs: an images request always does; a chat turn does when the
# reply holds a generation prompt, which is only known after the mllm answered, so every
# turn is refused while the queue is full (before the mllm is asked).
JOB_CREATING_ROUTES = frozenset({("POST", "/v1/images"), ("POST", "/v1/chat")})


class QueueDepth:
    """Counts the jobs in one Celery queue on a Redis broker: waiting + unacknowledged
    (+ held back by the per-tenant cap, with `slots`)."""

    def __init__(
        self,
        broker: aioredis.Redis,
        queue_name: str,
        refresh_s: float = 0.0,
        slots: AsyncTenantSlots | None = None,
    ) -> None:
        self._broker = broker
        self._slots = slots
        self._queue_name = queue_name
        self._refresh_s = refresh_s
        self._read_lock = asyncio.Lock()
        self._read_at = -math.inf  # time.monotonic() of the last read
        self._last_read = 0
        self._admitted = 0  # jobs admitted by this process since the last read
        self._positions = broker.register_script(_POSITIONS)

    async def estimate(self) -> int:
        """The depth as read at most `refresh_s` ago, plus the jobs admitted since
        (`admitted`). Requests that find it stale wait for one shared read."""
        if time.monotonic() - self._read_at >= self._refresh_s:
            async with self._read_lock:
                # Another request may have read it while this one waited for the lock.
                if time.monotonic() - self._read_at >= self._refresh_s:
                    self._last_read = await self.depth()
                    self._read_at = time.monotonic()
                    self._admitted = 0
        return self._last_read + self._admitted

    def admitted(self) -> None:
        """Count one admitted job-creating request until the next read."""
        self._admitted += 1

    async def depth(self) -> int:
        """Waiting messages plus messages delivered but not acknowledged (running jobs) plus
        held jobs. LLEN and the first HSCAN page share one round trip; a large `unacked`
        hash takes one more per further page, held jobs one or two."""
        async with self._broker.pipeline(transaction=False) as pipe:
            pipe.llen(self._queue_name)
            pipe.hscan(UNACKED_KEY, 0, count=_SCAN_PAGE)
            waiting, (cursor, entries) = await pipe.execute()
        count = self._count_ours(entries)
        while cursor:
            cursor, entries = await self._broker.hscan(UNACKED_KEY, cursor, count=_SCAN_PAGE)
            count += self._count_ours(cast(Mapping[Any, Any], entries))  # HSCAN: a dict
        held = 0 if self._slots is None else await self._slots.held()
        return int(waiting) + count + held

    async def depth_or_nan(self) -> float:
        """`depth()` for the metrics gauge: NaN while the broker is unreachable."""
        try:
            return float(await self.depth())
        except redis.RedisError as exc:
            logger.warning("queue depth unavailable: %r", exc)
            return math.nan

    async def positions(self, job_ids: Sequence[str]) -> dict[str, int]:
        """Where each job's message waits in the queue's list: how many messages are ahead
        of it (the list is pushed on the left and consumed from the right), 0 at its end.
        A job whose message is not in the list (delivered to a worker) is left out. One
        script on the broker walks the list (whose length the queue limit bounds) from
        the right, so no message travels to the gateway."""
        if not job_ids:
            return {}
        found = await self._positions(keys=[self._queue_name], args=list(job_ids))
        return {
            job_id: int(ahead)
            for job_id, ahead in zip(job_ids, cast(list[int], found), strict=True)
            if int(ahead) >= 0
        }

    def _count_ours(self, entries: Mapping[Any, Any]) -> int:
        """How many kombu `unacked` entries (an HSCAN page) were routed to this queue."""
        count = 0
        for raw in entries.values():
            try:
                _message, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue  # not a kombu entry: not ours to count
            if routing_key == self._queue_name:
                count += 1
        return count


def queue_full(depth: int, limit: int, retry_after_s: int) -> ApiError:
    """429 with Retry-After: the queue holds `limit` jobs or more."""
    return ApiError(
        429,
        "queue_full",
        f"the generation queue is full ({depth} jobs, limit {limit}); "
        f"retry after {retry_after_s} s",
        headers={"Retry-After": str(retry_after_s)},
    )


async def require_queue_capacity(request: Request) -> None:
    """Router dependency: 429 for a job-creating route while the queue is full."""
    route = request.scope.get("route")
    if (request.method, getattr(route, "path", "")) not in JOB_CREATING_ROUTES:
        return
    state = request.app.state.gateway
    settings = state.settings
    try:
        depth = await state.queue.estimate()
    except redis.RedisError as exc:
        # Fail open: the submission itself then meets the broker (503, job marked failed
        # when it cannot be sent), so an unreadable depth never refuses a sendable job.
        logger.warning("queue depth unavailable; not limiting: %r", exc)
        return
    if depth >= settings.max_queued_jobs:
        raise queue_full(depth, settings.max_queued_jobs, settings.queue_full_retry_after_s)
    state.queue.admitted()
