"""The gateway's FastAPI application (`uvicorn --factory services.gateway.app:create_app`)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from services.gateway.chat.api_router import router as chat_router
from services.gateway.conversations.api_router import router as conversations_router
from services.gateway.health.api_router import router as health_router
from services.gateway.http.apikeys import PUBLIC_PATHS, STUDIO_PATH, ApiKeyMiddleware
from services.gateway.http.backpressure import require_queue_capacity
from services.gateway.http.body_limit import BodyLimitMiddleware
from services.gateway.http.errors import install_error_handlers
from services.gateway.http.links import url_signer
from services.gateway.http.rate_limits import RateLimitMiddleware
from services.gateway.http.request_context import RequestIdMiddleware
from services.gateway.images.api_router import router as images_router
from services.gateway.jobs.api_router import router as jobs_router
from services.gateway.metrics import GatewayMetrics, RequestMetricsMiddleware
from services.gateway.openai_chat.api_router import router as openai_router
from services.gateway.openai_chat.errors import OpenAIErrorMiddleware
from services.gateway.openai_images.api_router import router as openai_images_router
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
        # Routes name their operationId (createImageJob); one that does not gets its
        # function's name in camelCase, never FastAPI's path-derived default.
        generate_unique_id_function=camel_case_operation_id,
    )
    install_error_handlers(app)
    # Job-creating routes answer 429 while the generation queue is full (backpressure.py).
    # OpenAI's Images API first: its POST paths sit under /v1/images/.
    for router in (openai_images_router, chat_router, images_router):
        app.include_router(router, dependencies=[Depends(require_queue_capacity)])
    # OpenAI's dialect; its chat completions route checks the queue itself.
    for router in (openai_router, jobs_router, conversations_router, health_router):
        app.include_router(router)
    # The studio (docs/studio.md): static files, public like /docs; the page asks for the
    # key and sends it with its API calls. `/studio` redirects to `/studio/`.
    app.mount(STUDIO_PATH, StaticFiles(directory=STUDIO_DIR, html=True), name="studio")
    # Innermost: a caller over its request budget gets 429 (rate_limits.py); it runs
    # after the key check, so a request without a valid key is a 401 that costs nothing.
    app.add_middleware(RateLimitMiddleware)
    # A request without a valid key (or a valid signed URL) is refused before its body
    # is read.
    app.add_middleware(
        ApiKeyMiddleware, required=settings.auth_required, signer=url_signer(settings)
    )
    # Added last = outermost: metrics also time requests the body limit refuses.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    # Outside the key check and the body limit: errors of the OpenAI-compatible routes,
    # theirs included, get OpenAI's body (openai_chat/errors.py).
    app.add_middleware(OpenAIErrorMiddleware)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    # Outermost but CORS: every response (a 401, a 413 too; not a CORS preflight) carries
    # X-Request-ID, and every log line of the request its id (request_context.py).
    app.add_middleware(RequestIdMiddleware)
    origins = settings.cors_origin_list
    if origins:
        # Outside everything: a preflight (OPTIONS) is answered here, before the key
        # check and the rate limits, and every answer (a 401 and a 429 too) carries the
        # Access-Control-* headers a browser needs to let the page read it.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=list(CORS_METHODS),
            allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
            allow_credentials=False,  # API keys travel in Authorization, not cookies
            max_age=600,
        )
    install_security_scheme(app)
    return app


# What a page on an allowed origin may send and read (docs/api.md "Browsers").
CORS_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Prefer",
    "X-Request-ID",
    "Last-Event-ID",
)
CORS_EXPOSED_HEADERS = (
    "Location",
    "Retry-After",
    "X-Request-ID",
    "Preference-Applied",
    "WWW-Authenticate",
)
BEARER_SCHEME = "bearerAuth"
STUDIO_DIR = Path(__file__).parent / "studio"
# The routes a signed URL opens (http/signed_urls.py).
SIGNED_PATHS = ("/v1/images/{image_id}", "/v1/jobs/{job_id}/events")


def camel_case_operation_id(route: APIRoute) -> str:
    """`read_job` -> `readJob`: the operationId of a route that declares none, in the
    style client generators turn into method names."""
    first, *rest = route.name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def install_security_scheme(app: FastAPI) -> None:
    """Declare `Authorization: Bearer <API key>` in the OpenAPI document: the scheme in
    components.securitySchemes, required by every operation but the public ones (which
    the API-key middleware lets through), so /docs offers "Authorize". Behaviour is the
    middleware's; this only describes it."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`llmga-keys create --tenant T`); needed when "
            "LLMGA_AUTH_REQUIRED=true. Signed image and event URLs need none.",
        }
        schema["security"] = [{BEARER_SCHEME: []}]
        for path, operations in schema.get("paths", {}).items():
            if path in PUBLIC_PATHS:
                for operation in operations.values():
                    operation["security"] = []
            elif path in SIGNED_PATHS:  # a key, or a signed URL (the empty requirement)
                operations["get"]["security"] = [{BEARER_SCHEME: []}, {}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
