"""The local OpenAI-compatible server: FastAPI app factory and uvicorn entry point."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.mllm.engine import LocalEngine
from services.mllm.model_loader import load_model
from services.mllm.openai.api_router import install_error_handlers, router
from services.mllm.openai.serving import OpenAIServingChat
from services.mllm.settings import MllmSettings

logger = logging.getLogger("services.mllm")


def build_app(settings: MllmSettings | None = None, engine: LocalEngine | None = None) -> FastAPI:
    """The app; it loads the configured model at startup unless an engine is given."""
    settings = settings or MllmSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        root = None
        chat_engine = engine
        if chat_engine is None:
            loaded = load_model(settings)
            logger.info("model ready after %.1fs (%s)", loaded.load_seconds, loaded.source)
            chat_engine = LocalEngine(loaded.model, loaded.tokenizer)
            root = loaded.source
        app.state.serving_chat = OpenAIServingChat(chat_engine, settings, root=root)
        yield

    app = FastAPI(title="LLMGA mllm (local engine)", lifespan=lifespan)
    app.include_router(router)
    install_error_handlers(app)
    return app


def main() -> None:
    import uvicorn

    settings = MllmSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(
        build_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )
