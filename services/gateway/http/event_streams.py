"""Server-sent event responses (`GET /v1/jobs/{id}/events`, `POST /v1/chat` with stream),
through sse-starlette's EventSourceResponse: keep-alive pings every
LLMGA_JOB_EVENTS_KEEPALIVE_S, the stream stops as soon as the client disconnects, and it
is bounded:

- it ends after LLMGA_EVENT_STREAM_MAX_S, with a last comment saying so;
- it ends when the gateway shuts down (SIGTERM), with a last comment saying so, so a
  shutdown never waits on an open stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.gateway.settings import GatewaySettings

# How long a stream may take to send its last comment once shutdown began (sse-starlette
# then cancels it); far below LLMGA_SHUTDOWN_TIMEOUT_S.
SHUTDOWN_GRACE_S = 1.0
# Every line ends with LF alone, as the gateway's streams always did.
_SEP = "\n"
# Proxies must pass events through at once rather than buffer the stream.
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

DURATION_ENDED = "stream ended: open for LLMGA_EVENT_STREAM_MAX_S ({limit:g} s); reconnect"
SHUTDOWN_ENDED = "stream ended: the gateway is shutting down; reconnect"


def keepalive() -> ServerSentEvent:
    """The ping comment (`: keep-alive`)."""
    return ServerSentEvent(comment="keep-alive", sep=_SEP)


def event_stream(
    events: AsyncGenerator[ServerSentEvent, None], settings: GatewaySettings
) -> EventSourceResponse:
    """The response that sends `events`, with pings, bounded in time and by shutdown."""
    shutdown = anyio.Event()
    return EventSourceResponse(
        _bounded(events, settings.event_stream_max_s, shutdown),
        headers=_HEADERS,
        ping=settings.job_events_keepalive_s,
        ping_message_factory=keepalive,
        sep=_SEP,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )


async def _bounded(
    events: AsyncGenerator[ServerSentEvent, None], max_s: float, shutdown: anyio.Event
) -> AsyncIterator[ServerSentEvent]:
    """`events` until they end, `max_s` passes or `shutdown` is set; in the last two
    cases a final comment says why. Waiting for the next event is cancelled (the inner
    generator's cleanup runs) rather than waited out."""
    deadline = anyio.current_time() + max_s
    waiting: anyio.CancelScope | None = None

    async def cancel_on_shutdown() -> None:
        await shutdown.wait()
        if waiting is not None:
            waiting.cancel()

    watcher = asyncio.create_task(cancel_on_shutdown())
    try:
        while not shutdown.is_set():
            with anyio.CancelScope(deadline=deadline) as waiting:
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
            if waiting.cancelled_caught:
                break
            yield event
        reason = SHUTDOWN_ENDED if shutdown.is_set() else DURATION_ENDED.format(limit=max_s)
        yield ServerSentEvent(comment=reason, sep=_SEP)
    finally:
        watcher.cancel()
        # Shielded: on a disconnect this generator is cancelled, and the inner one must
        # still release what it holds (a pub/sub connection, the mllm's stream).
        with anyio.CancelScope(shield=True):
            await events.aclose()
