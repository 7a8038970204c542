"""Backpressure: refuse new jobs with 429 while the generation queue is full.

The queue depth is read from the broker itself (kombu's Redis transport), so it counts
every job a worker still has to finish, whoever submitted it:

- messages waiting in the queue's Redis list (`LLEN <queue>`), and
- messages delivered to a worker but not yet acknowledged (kombu's `unacked` hash, whose
  values are `[message, exchange, routing_key]`): with `acks_late` a running job's
  message stays there until the job ends, and it leaves the list when it is delivered.

The check runs before anything is written or sent to the mllm, so a refused request
changes nothing and the client retries after `Retry-After`. When the broker cannot be
read the check lets the request through (fail open; sending the job then fails with
503). It is a soft limit: requests checked at the same moment may all pass, so the queue
can exceed the limit by the number of concurrent submissions. Accepted jobs are never
dropped.
"""

from __future__ import annotations

import json
import logging
import math

import redis
from fastapi import Request

from services.gateway.errors import ApiError

logger = logging.getLogger(__name__)

# kombu's Redis transport defaults (`unacked_key`); neither the gateway nor the worker
# changes it.
UNACKED_KEY = "unacked"

# The routes that create jobs: an images request always does; a chat turn does when the
# reply holds a generation prompt, which is only known after the mllm answered, so every
# turn is refused while the queue is full (before the mllm is asked).
JOB_CREATING_ROUTES = frozenset({("POST", "/v1/images"), ("POST", "/v1/chat")})


class QueueDepth:
    """Counts the jobs in one Celery queue on a Redis broker: waiting + unacknowledged."""

    def __init__(self, broker: redis.Redis, queue_name: str) -> None:
        self._broker = broker
        self._queue_name = queue_name

    def depth(self) -> int:
        """Waiting messages plus messages delivered but not acknowledged (running jobs)."""
        waiting = int(self._broker.llen(self._queue_name))  # type: ignore[arg-type]
        return waiting + self._unacked()

    def depth_or_nan(self) -> float:
        """`depth()` for the metrics gauge: NaN while the broker is unreachable."""
        try:
            return float(self.depth())
        except redis.RedisError as exc:
            logger.warning("queue depth unavailable: %r", exc)
            return math.nan

    def _unacked(self) -> int:
        count = 0
        for _tag, raw in self._broker.hscan_iter(UNACKED_KEY, count=500):
            try:
                _message, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue  # not a kombu entry: not ours to count
            if routing_key == self._queue_name:
                count += 1
        return count

    def close(self) -> None:
        self._broker.close()


def queue_full(depth: int, limit: int, retry_after_s: int) -> ApiError:
    """429 with Retry-After: the queue holds `limit` jobs or more."""
    return ApiError(
        429,
        "queue_full",
        f"the generation queue is full ({depth} jobs, limit {limit}); "
        f"retry after {retry_after_s} s",
        headers={"Retry-After": str(retry_after_s)},
    )


def require_queue_capacity(request: Request) -> None:
    """Router dependency: 429 for a job-creating route while the queue is full.

    A sync dependency, so FastAPI runs its Redis calls in the thread pool."""
    route = request.scope.get("route")
    if (request.method, getattr(route, "path", "")) not in JOB_CREATING_ROUTES:
        return
    state = request.app.state.gateway
    settings = state.settings
    try:
        depth = state.queue.depth()
    except redis.RedisError as exc:
        # Fail open: the submission itself then meets the broker (503, job marked failed
        # when it cannot be sent), so an unreadable depth never refuses a sendable job.
        logger.warning("queue depth unavailable; not limiting: %r", exc)
        return
    if depth >= settings.max_queued_jobs:
        raise queue_full(depth, settings.max_queued_jobs, settings.queue_full_retry_after_s)
