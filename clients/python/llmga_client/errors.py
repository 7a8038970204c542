"""Exceptions raised by the client: one class per kind of failure, each carrying what the
gateway said (HTTP status, error type, message, the field at fault, Retry-After)."""

from __future__ import annotations

import json
from typing import Any

import httpx


class LLMGAError(Exception):
    """Base class of every exception the client raises."""


class APIConnectionError(LLMGAError):
    """No answer from the gateway (connection refused or dropped, timeout), retries spent."""


class APIStatusError(LLMGAError):
    """The gateway answered an error status. `type`, `field` and `message` are its error
    body's (`{"error": {"type", "message", "field"}}`); `retry_after` its `Retry-After` in
    seconds, when sent (429, 503, 504)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        field: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        where = f" (field {field})" if field else ""
        super().__init__(f"HTTP {status} {type or 'error'}{where}: {message}")
        self.status = status
        self.message = message
        self.type = type
        self.field = field
        self.retry_after = retry_after
        self.request_id = request_id
        self.body = body


class BadRequestError(APIStatusError):
    """400: a malformed body."""


class AuthenticationError(APIStatusError):
    """401: no API key, or an unknown or revoked one."""


class PermissionDeniedError(APIStatusError):
    """403: a signed URL or event token that is invalid or expired."""


class NotFoundError(APIStatusError):
    """404: unknown, expired, deleted, or another tenant's."""


class ConflictError(APIStatusError):
    """409: e.g. canceling a job that already ended, an Idempotency-Key reused."""


class PayloadTooLargeError(APIStatusError):
    """413: an image or request over the gateway's size limits."""


class UnprocessableEntityError(APIStatusError):
    """422: a field's value is not accepted; `field` names it, `message` says why."""


class RateLimitError(APIStatusError):
    """429: rate limit, daily quota or a full queue; `retry_after` says when to resend."""


class ServerError(APIStatusError):
    """5xx: the gateway or a service behind it failed (503/504 are transient)."""


class StreamError(APIStatusError):
    """An error sent inside an event stream after it started (`event: error`)."""


class JobWaitTimeout(LLMGAError, TimeoutError):
    """`jobs.wait` gave up before the job ended; `job` is its last state."""

    def __init__(self, job: Any, timeout_s: float) -> None:
        super().__init__(f"job {job.id} still {job.status} after {timeout_s} s")
        self.job = job


class WebhookVerificationError(LLMGAError):
    """A webhook delivery whose headers or signature do not verify."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def retry_after_s(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (its delta-seconds form, which the gateway sends)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_body(response: httpx.Response) -> tuple[Any, dict[str, Any]]:
    """The parsed body (or its text) and its `error` object ({} if there is none)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text, {}
    detail = body.get("error") if isinstance(body, dict) else None
    return body, detail if isinstance(detail, dict) else {}


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The exception for an error answer (its body already read)."""
    body, detail = error_body(response)
    status = response.status_code
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIStatusError)
    message = detail.get("message") or (body if isinstance(body, str) else "") or "no message"
    return cls(
        status,
        str(message),
        type=detail.get("type"),
        field=detail.get("field"),
        retry_after=retry_after_s(response),
        request_id=response.headers.get("x-request-id"),
        body=body,
    )
