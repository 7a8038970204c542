"""The gateway's FastAPI application (`uvicorn --factory services.gateway.app:create_app`)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from services.gateway.chat.api_router import router as chat_router
from services.gateway.conversations.api_router import router as conversations_router
from services.gateway.health.api_router import router as health_router
from services.gateway.http.apikeys import ApiKeyMiddleware
from services.gateway.http.backpressure import require_queue_capacity
from services.gateway.http.body_limit import BodyLimitMiddleware
from services.gateway.http.errors import install_error_handlers
from services.gateway.http.rate_limits import RateLimitMiddleware
from services.gateway.http.request_context import RequestIdMiddleware
from services.gateway.images.api_router import router as images_router
from services.gateway.jobs.api_router import router as jobs_router
from services.gateway.metrics import GatewayMetrics, RequestMetricsMiddleware
from services.gateway.openai_chat.api_router import router as openai_router
from services.gateway.openai_chat.errors import OpenAIErrorMiddleware
from services.gateway.settings import GatewaySettings, load_settings
from services.gateway.state import GatewayState
from services.gateway.webhooks.dispatcher import WebhookDispatcher


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the app; clients (Redis, httpx, Celery producer) are created in the lifespan."""
    settings = settings or load_settings()
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = GatewayState.open(settings, metrics)
        app.state.gateway = state
        # Every gateway delivers webhooks from the shared outbox (webhooks/dispatcher.py).
        dispatcher = WebhookDispatcher(settings, metrics) if settings.webhooks_enabled else None
        delivering = asyncio.create_task(dispatcher.run()) if dispatcher else None
        # What exists now (modules, the app, clients) lives as long as the process: out of
        # the collector's reach, so full collections under load scan only request garbage.
        gc.freeze()
        try:
            yield
        finally:
            if dispatcher is not None and delivering is not None:
                delivering.cancel()
                await asyncio.gather(delivering, return_exceptions=True)
                await dispatcher.aclose()
            await state.close()

    app = FastAPI(
        title="LLMGA gateway",
        version="0.1.0",
        description="Chat with a multimodal LLM that writes generation prompts; generate "
        "images as asynchronous jobs. Limits and errors: docs/api.md.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Job-creating routes answer 429 while the generation queue is full (backpressure.py).
    for router in (chat_router, images_router):
        app.include_router(router, dependencies=[Depends(require_queue_capacity)])
    # OpenAI's dialect; its chat completions route checks the queue itself.
    for router in (openai_router, jobs_router, conversations_router, health_router):
        app.include_router(router)
    # Innermost: a caller over its request budget gets 429 (rate_limits.py); it runs
    # after the key check, so a request without a valid key is a 401 that costs nothing.
    app.add_middleware(RateLimitMiddleware)
    # A request without a valid key is refused before its body is read.
    app.add_middleware(ApiKeyMiddleware, required=settings.auth_required)
    # Added last = outermost: metrics also time requests the body limit refuses.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    # Outside the key check and the body limit: errors of the OpenAI-compatible routes,
    # theirs included, get OpenAI's body (openai_chat/errors.py).
    app.add_middleware(OpenAIErrorMiddleware)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    # Outermost: every response (a 401, a 413 too) carries X-Request-ID, and every log
    # line of the request its id (request_context.py).
    app.add_middleware(RequestIdMiddleware)
    return app
