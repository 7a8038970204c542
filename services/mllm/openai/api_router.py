"""HTTP routes of the OpenAI-compatible API (the logic lives in :mod:`.serving`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.mllm.openai.protocol import ChatCompletionRequest, ErrorInfo, ErrorResponse
from services.mllm.openai.serving import IGNORED_IMAGES_HEADER, OpenAIServingChat, RequestError

router = APIRouter()


def _serving(request: Request) -> OpenAIServingChat:
    serving: OpenAIServingChat = request.app.state.serving_chat
    return serving


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process is up and its model is loaded (it loads before serving)."""
    return {"status": "ok"}


@router.get("/v1/models")
async def list_models(raw: Request) -> JSONResponse:
    return JSONResponse(_serving(raw).models().model_dump())


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    request: ChatCompletionRequest, raw: Request
) -> JSONResponse | StreamingResponse:
    serving = _serving(raw)
    chat = serving.prepare(request)
    headers = {IGNORED_IMAGES_HEADER: str(chat.ignored_images)}
    if request.stream:
        headers["Cache-Control"] = "no-cache"
        return StreamingResponse(
            serving.stream(chat), media_type="text/event-stream", headers=headers
        )
    response = await serving.complete(chat)
    return JSONResponse(response.model_dump(), headers=headers)


def _error(status: int, message: str, type: str, param: str | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(message=message, type=type, param=param))
    return JSONResponse(body.model_dump(), status_code=status)


def _where(problem: Any) -> str:
    """``messages.0.role`` for a pydantic error located at ``("body", "messages", 0, "role")``."""
    return ".".join(str(part) for part in problem.get("loc", ()) if part != "body")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with an OpenAI-style ``{"error": {...}}`` body."""

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, error: RequestError) -> JSONResponse:
        return JSONResponse(error.body.model_dump(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems: list[Any] = list(error.errors())
        first = problems[0] if problems else {}
        if first.get("type") == "json_invalid":
            return _error(400, "The request body is not valid JSON.", "invalid_request_error")
        message = "; ".join(f"{_where(item) or 'body'}: {item.get('msg')}" for item in problems)
        return _error(400, message, "invalid_request_error", _where(first) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return _error(error.status_code, str(error.detail), kind)
