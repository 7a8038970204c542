"""OpenAI's error body on the OpenAI-compatible routes only.

Every gateway error is `{"error": {"type", "message", "field", ...}}` (http/errors.py),
from a handler or a middleware (401 key, 413 body limit, 429 limits). On the paths of
this area the middleware below rewrites that body to OpenAI's
`{"error": {"message", "type", "param", "code"}}`, keeping the status code and headers:
`type` is OpenAI's kind for the status, `code` the gateway's type, `param` its field.
Other routes keep the gateway's body; successful responses and streams pass untouched.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.http.errors import error_body

logger = logging.getLogger(__name__)

# The routes of this area and of OpenAI's Images API (openai_images/).
OPENAI_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/models",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/images/variations",
    }
)

_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_kind(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    if status in _KINDS:
        return _KINDS[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_error_body(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """The gateway's error body in OpenAI's shape; extra fields (`details`, `limit`) kept."""
    error = dict(body.get("error") or {})
    gateway_type = error.pop("type", None)
    return {
        "error": {
            "message": str(error.pop("message", "error")),
            "type": openai_kind(status),
            "param": error.pop("field", None),
            "code": gateway_type,
            **error,
        }
    }


class OpenAIErrorMiddleware:
    """Rewrites JSON error bodies (status >= 400) of OPENAI_PATHS to OpenAI's shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in OPENAI_PATHS:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        started = False
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start, started
            if message["type"] == "http.response.start":
                started = True
                headers = dict(message.get("headers", []))
                is_json = headers.get(b"content-type", b"").startswith(b"application/json")
                if message["status"] >= 400 and is_json:
                    start = message  # held back until the body is complete
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await _send_rewritten(send, start, b"".join(chunks))

        try:
            await self.app(scope, receive, rewrite)
        except Exception:
            # An unhandled error would get its 500 from Starlette's outermost middleware,
            # in the gateway's shape; answered here (and logged as there) in OpenAI's.
            if started:
                raise
            logger.exception("unhandled error")
            body = error_body("internal_error", "internal server error")
            await JSONResponse(openai_error_body(500, body), status_code=500)(scope, receive, send)


async def _send_rewritten(send: Send, start: Message, raw: bytes) -> None:
    status = start["status"]
    try:
        body = json.loads(raw)
        converted = json.dumps(openai_error_body(status, body)).encode()
    except (ValueError, TypeError, AttributeError):
        converted = raw  # not the gateway's body: as it was
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(converted)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": converted})
