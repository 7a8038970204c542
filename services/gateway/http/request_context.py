"""Request ids: every response carries `X-Request-ID`, and everything logged while the
request is handled (and the job it queues, `GenerationRequest.request_id`) carries it.

A client's `X-Request-ID` is kept when it is 1-128 characters of letters, digits and
`._:-`; otherwise, or without one, the gateway makes a fresh id.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.logs import is_valid_request_id, log_context

REQUEST_ID_HEADER = "x-request-id"


def new_request_id() -> str:
    """A fresh id: 32 hex characters (128 random bits)."""
    return os.urandom(16).hex()


class RequestIdMiddleware:
    """Sets the request id for the request's context and returns it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == REQUEST_ID_HEADER.encode():
                given = value.decode("latin-1")
                break
        request_id = given if is_valid_request_id(given) else new_request_id()
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name.lower() != header[0]
                ]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)
