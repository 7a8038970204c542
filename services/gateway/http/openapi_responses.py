"""The responses routes declare in the OpenAPI document, written once: routes name these
instead of repeating them, so every protected operation documents the same 401, 429 and
503 (with their headers) and client generators see one shape per status.

    @router.get("/v1/jobs/{job_id}", responses={**protected(), 404: error("Unknown job.")})

They only describe what the middleware and the error handlers answer (apikeys.py,
rate_limits.py, backpressure.py, body_limit.py, errors.py); tests/integration/
test_fuzz_openapi.py checks the answers against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from services.gateway.protocol import ErrorResponse

Responses = dict[int | str, dict[str, Any]]

# Response headers, by name (OpenAPI header objects).
RETRY_AFTER: dict[str, Any] = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 0},
}
WWW_AUTHENTICATE: dict[str, Any] = {
    "description": 'The scheme the API expects: `Bearer realm="llmga"`.',
    "schema": {"type": "string"},
}
LOCATION: dict[str, Any] = {
    "description": "The job's URL (`/v1/jobs/{id}`): poll it, or follow its `/events`.",
    "schema": {"type": "string"},
}

# The media types an image download may have (the store keeps what it was given; uploads
# and generated images are PNG).
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp")


def error(
    description: str,
    *,
    headers: dict[str, dict[str, Any]] | None = None,
    model: type[BaseModel] = ErrorResponse,
) -> dict[str, Any]:
    """One error response: its body model (the gateway's error body unless told), what
    it means, and its headers."""
    declared: dict[str, Any] = {"model": model, "description": description}
    if headers:
        declared["headers"] = headers
    return declared


def protected(model: type[BaseModel] = ErrorResponse, *, creates_jobs: bool = False) -> Responses:
    """What every route behind the API key may answer whatever it does: 401 without a
    valid key, 429 over the caller's request budget (a job-creating route also while the
    queue is full or the day's image quota is spent), 503 while the state store is down."""
    too_many = "The caller's request rate limit is spent (`rate_limited`)"
    if creates_jobs:
        too_many += (
            "; or the generation queue is full (`queue_full`), or the tenant's images "
            "today would exceed its quota (`quota_exceeded`)"
        )
    return {
        401: error(
            "No valid API key (with LLMGA_AUTH_REQUIRED=true).",
            headers={"WWW-Authenticate": WWW_AUTHENTICATE},
            model=model,
        ),
        429: error(too_many + ".", headers={"Retry-After": RETRY_AFTER}, model=model),
        503: error(
            "A dependency (the state store, the job queue or the mllm) is unavailable.",
            headers={"Retry-After": RETRY_AFTER},
            model=model,
        ),
    }


def job_created(description: str) -> Responses:
    """202 of a job-creating route: the job, and its URL in `Location`."""
    return {202: {"description": description, "headers": {"Location": LOCATION}}}


def image_content(description: str) -> Responses:
    """200 of an image download: the bytes, as one of IMAGE_MEDIA_TYPES."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        200: {
            "description": description,
            "content": {media_type: binary for media_type in IMAGE_MEDIA_TYPES},
        }
    }


def upstream_errors(model: type[BaseModel] = ErrorResponse, *, bad_answer: str = "") -> Responses:
    """502 and 504 of the routes that ask the mllm (503 is in `protected`)."""
    return {
        502: error(bad_answer or "The mllm gave an unusable answer.", model=model),
        504: error(
            "The mllm did not answer in time.",
            headers={"Retry-After": RETRY_AFTER},
            model=model,
        ),
    }


def malformed(model: type[BaseModel] = ErrorResponse) -> Responses:
    """400 of a route with a JSON body: the body is not JSON, or not an object
    (`invalid_json`)."""
    return {400: error("The body is not a JSON object (`invalid_json`).", model=model)}


def too_large(description: str, model: type[BaseModel] = ErrorResponse) -> Responses:
    """413 of a route with a body."""
    return {413: error(description, model=model)}
