"""Refuse request bodies over a byte limit before they are buffered in full."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.http.errors import error_body


def _message(limit: int) -> str:
    return f"request body is larger than {limit} bytes (LLMGA_MAX_REQUEST_BYTES)"


class BodyLimitMiddleware:
    """413 on a Content-Length over the limit, or while streaming a chunked body.

    The streaming check raises an HTTPException from `receive`, i.e. inside the route,
    where FastAPI passes it on (other errors while reading a body become a 400) and the
    API's handler turns it into the usual JSON error.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = JSONResponse(
                    error_body("payload_too_large", _message(self.max_bytes)),
                    status_code=413,
                    headers={"connection": "close"},
                )
                await response(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, _message(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)
