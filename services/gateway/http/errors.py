"""One JSON error shape for every failure: `{"error": {"type", "message", "field"}}`.

Bad input is always a 4xx with a message that names the offending field; internal errors
are a generic 500 whose details stay in the server log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.blob_store import BlobStoreUnavailable
from services.gateway.mllm.client import MllmError, MllmTimeout, MllmUnavailable

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API answers on purpose, with its HTTP status and error type."""

    def __init__(
        self,
        status_code: int,
        type_: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.type = type_
        self.message = message
        self.field = field
        self.headers = headers


def invalid(message: str, field: str | None = None) -> ApiError:
    """422: the request is well-formed but a value is not acceptable."""
    return ApiError(422, "invalid_request", message, field)


def not_found(message: str) -> ApiError:
    """404 with a message that says what was not found."""
    return ApiError(404, "not_found", message)


def conflict(type_: str, message: str, headers: dict[str, str] | None = None) -> ApiError:
    """409: the request conflicts with the current state of a resource."""
    return ApiError(409, type_, message, headers=headers)


def too_large(message: str, field: str | None = None) -> ApiError:
    """413: a payload over a size limit."""
    return ApiError(413, "payload_too_large", message, field)


def error_body(type_: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": {"type": type_, "message": message, "field": field, **extra}}


def _field_path(loc: tuple[int | str, ...]) -> str:
    """("body", "images", 0, "b64") -> "images[0].b64"; the location kind is implied."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


# Pydantic's error types for a body that is not an object at all.
_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type", "missing"}


def _reason(err: Any) -> str:
    """Pydantic's message without the "Value error, " prefix of custom validators."""
    return str(err.get("msg", "")).removeprefix("Value error, ")


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        error_body(exc.type, exc.message, exc.field),
        status_code=exc.status_code,
        headers=exc.headers or retry_after(request, exc.status_code),
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            return JSONResponse(
                error_body("invalid_json", f"malformed JSON body: {reason}"), status_code=400
            )
        if tuple(err.get("loc", ())) == ("body",) and err.get("type") in _NOT_AN_OBJECT:
            return JSONResponse(
                error_body(
                    "invalid_json",
                    "the request body must be a JSON object (Content-Type: application/json)",
                ),
                status_code=400,
            )
    # The input values are never echoed: they may be megabytes of base64.
    details = [
        {"field": _field_path(tuple(err.get("loc", ()))), "message": _reason(err)} for err in errors
    ]
    if not details:
        return JSONResponse(error_body("invalid_request", "invalid request"), status_code=422)
    first = details[0]
    where = first["field"] or "body"
    return JSONResponse(
        error_body(
            "invalid_request",
            f"{where}: {first['message']}",
            first["field"] or None,
            details=details,
        ),
        status_code=422,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kinds = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    return JSONResponse(
        error_body(kinds.get(exc.status_code, "http_error"), str(exc.detail)),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def mllm_error_status(exc: MllmError) -> tuple[int, str]:
    """(HTTP status, error type) of an mllm failure: the mllm is an upstream, so
    unreachable -> 503, too slow -> 504, nonsense -> 502."""
    if isinstance(exc, MllmUnavailable):
        return 503, "upstream_unavailable"
    if isinstance(exc, MllmTimeout):
        return 504, "upstream_timeout"
    return 502, "upstream_error"  # MllmBadResponse


def retry_after(request: Request, status: int) -> dict[str, str] | None:
    """`Retry-After` for a transient upstream failure (503, 504); None for the others."""
    if status not in (503, 504):
        return None
    state = getattr(request.app.state, "gateway", None)
    seconds = state.settings.upstream_retry_after_s if state is not None else 5
    return {"Retry-After": str(seconds)}


async def _mllm_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MllmError)
    status, kind = mllm_error_status(exc)
    return JSONResponse(
        error_body(kind, str(exc)), status_code=status, headers=retry_after(request, status)
    )


def _store_unavailable(
    store: str, log_as: str
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """The handler of a store's outage (Redis, the object store): a transient 503 the
    client may retry (Retry-After), logged for the operator, not a bug."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s error: %r", log_as, exc)
        return JSONResponse(
            error_body("service_unavailable", f"the {store} is unavailable; try again later"),
            status_code=503,
            headers=retry_after(request, 503),
        )

    return handle


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # Never leak internals: log the traceback, answer a generic message.
    logger.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the shape of `error_body`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(MllmError, _mllm_error)
    app.add_exception_handler(redis.RedisError, _store_unavailable("state store", "redis"))
    app.add_exception_handler(BlobStoreUnavailable, _store_unavailable("image store", "blob store"))
    app.add_exception_handler(Exception, _unexpected)
