"""Everything the sync and the async client share, written once and without I/O.

An operation is a generator: it yields `Send` (an HTTP request to send) or `Sleep` (a pause
before a retry), receives the response (or the transport error) of each `Send`, and
returns its result. `Client` runs operations with `httpx.Client` and `time.sleep`,
`AsyncClient` with `httpx.AsyncClient` and `asyncio.sleep`; request building, retries,
waits and parsing live here only.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
from pydantic import BaseModel

from ._sse import SSEDecoder
from ._version import __version__
from .errors import (
    APIConnectionError,
    JobWaitTimeout,
    StreamError,
    error_body,
    error_from_response,
    retry_after_s,
)
from .models import (
    ChatDelta,
    ChatRequest,
    ChatResponse,
    ConversationList,
    ConversationView,
    ImagesRequest,
    ImagesResponse,
    ImageView,
    JobEvent,
    JobList,
    JobView,
    PreviewEvent,
    UploadResponse,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# Statuses that say "the same request may succeed later" (with Retry-After from the gateway).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# One `Prefer: wait` of `jobs.wait`: within the gateway's bound (LLMGA_MAX_WAIT_S, default
# 60) with room for a deployment that lowers it; longer waits are several in a row.
MAX_WAIT_STEP_S = 30

FileInput = bytes | str | os.PathLike[str] | IO[bytes]


@dataclass(frozen=True)
class Settings:
    """How a client talks to the gateway (see `Client`)."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 3
    retry_backoff_s: float = 0.5
    max_retry_after_s: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        base_url: str | None,
        api_key: str | None,
        timeout_s: float,
        max_retries: int,
        retry_backoff_s: float,
        max_retry_after_s: float,
        headers: Mapping[str, str] | None,
    ) -> Settings:
        """Checked settings; `base_url` and `api_key` default to LLMGA_BASE_URL and
        LLMGA_API_KEY from the environment."""
        if max_retries < 0 or retry_backoff_s < 0 or max_retry_after_s < 0 or timeout_s <= 0:
            raise ValueError(
                "max_retries, retry_backoff_s and max_retry_after_s must be >= 0, timeout_s > 0"
            )
        return cls(
            base_url=(base_url or os.environ.get("LLMGA_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            api_key=api_key if api_key is not None else os.environ.get("LLMGA_API_KEY"),
            timeout_s=timeout_s,
            max_retries=max_retries,
            retry_backoff_s=retry_backoff_s,
            max_retry_after_s=max_retry_after_s,
            headers=dict(headers or {}),
        )


@dataclass(frozen=True)
class Send:
    """Send `request`; with `stream`, hand back the response before its body is read."""

    request: httpx.Request
    stream: bool = False


@dataclass(frozen=True)
class Sleep:
    seconds: float


Outcome = httpx.Response | httpx.TransportError
Operation = Generator[Send | Sleep, Outcome | None, T]


# ----------------------------------------------------------------------------- requests


def build_request(
    settings: Settings,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    files: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    read_timeout_s: float | None = None,
) -> httpx.Request:
    """A request to the gateway: absolute URL, the key, the client's headers, a timeout.
    The key goes to the gateway only: an absolute URL elsewhere (an object store's
    presigned image URL) carries its own authorization and would refuse a second one."""
    url = path if path.startswith(("http://", "https://")) else settings.base_url + path
    all_headers = {"user-agent": f"llmga-client/{__version__}", **settings.headers}
    if settings.api_key and url.startswith(settings.base_url + "/"):
        all_headers["authorization"] = f"Bearer {settings.api_key}"
    all_headers.update(headers or {})
    timeout = httpx.Timeout(settings.timeout_s, read=read_timeout_s or settings.timeout_s)
    return httpx.Request(
        method,
        url,
        params={k: v for k, v in (params or {}).items() if v is not None},
        json=json_body,
        files=files,
        headers=all_headers,
        extensions={"timeout": timeout.as_dict()},
    )


def retry_delay(settings: Settings, outcome: Outcome, attempt: int) -> float | None:
    """Seconds to wait before resending, or None to give up with this outcome. Transport
    errors, 429, 502, 503, 504 and 409 `idempotency_in_progress` are retried, at most
    `max_retries` times; after the gateway's `Retry-After` if it sent one (unless longer
    than `max_retry_after_s`: that is not worth waiting for), else with exponential
    backoff."""
    if attempt >= settings.max_retries:
        return None
    backoff = settings.retry_backoff_s * 2.0**attempt
    if isinstance(outcome, httpx.TransportError):
        return backoff
    transient = outcome.status_code in RETRY_STATUSES or (
        outcome.status_code == 409
        and error_body(outcome)[1].get("type") == "idempotency_in_progress"
    )
    if not transient:
        return None
    asked = retry_after_s(outcome)
    if asked is None:
        return backoff
    return asked if asked <= settings.max_retry_after_s else None


def send(
    settings: Settings, build: Callable[[], httpx.Request], stream: bool = False
) -> Operation[httpx.Response]:
    """Send a request, retried as `retry_delay` says; the successful response, or raise
    the error of the last attempt."""
    attempt = 0
    while True:
        outcome = yield Send(build(), stream)
        assert outcome is not None
        delay = retry_delay(settings, outcome, attempt)
        if delay is None:
            if isinstance(outcome, httpx.TransportError):
                raise APIConnectionError(f"no answer from {settings.base_url}: {outcome}") from (
                    outcome
                )
            if outcome.is_error:
                raise error_from_response(outcome)
            return outcome
        attempt += 1
        yield Sleep(delay)


def call(
    settings: Settings, model: type[M], method: str, path: str, **request: Any
) -> Operation[M]:
    """One request, its JSON answer parsed as `model`."""
    response = yield from send(settings, lambda: build_request(settings, method, path, **request))
    return model.model_validate_json(response.content)


def no_content(settings: Settings, method: str, path: str) -> Operation[None]:
    yield from send(settings, lambda: build_request(settings, method, path))


def wait_headers(idempotency_key: str | None, wait_s: int | None) -> dict[str, str]:
    headers = {"idempotency-key": idempotency_key or str(uuid.uuid4())}
    if wait_s is not None:
        headers["prefer"] = f"wait={wait_s}"
    return headers


# ----------------------------------------------------------------------------- operations


def create_image_job(
    settings: Settings, fields: Mapping[str, Any], idempotency_key: str | None, wait_s: int | None
) -> Operation[ImagesResponse]:
    """POST /v1/images; an Idempotency-Key always (one per call, kept across retries)."""
    body = ImagesRequest.model_validate(fields).model_dump(mode="json", exclude_unset=True)
    return call(
        settings,
        ImagesResponse,
        "POST",
        "/v1/images",
        json_body=body,
        headers=wait_headers(idempotency_key, wait_s),
        read_timeout_s=settings.timeout_s + (wait_s or 0),
    )


def chat_body(fields: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    body = ChatRequest.model_validate({**fields, "stream": stream})
    return body.model_dump(mode="json", exclude_unset=True)


def create_chat_turn(
    settings: Settings, fields: Mapping[str, Any], idempotency_key: str | None
) -> Operation[ChatResponse]:
    """POST /v1/chat, not streamed; an Idempotency-Key always."""
    return call(
        settings,
        ChatResponse,
        "POST",
        "/v1/chat",
        json_body=chat_body(fields, stream=False),
        headers=wait_headers(idempotency_key, None),
    )


def open_chat_stream(settings: Settings, fields: Mapping[str, Any]) -> Operation[httpx.Response]:
    """POST /v1/chat with `stream: true` (the gateway takes no Idempotency-Key there)."""
    body = chat_body(fields, stream=True)
    return send(settings, lambda: build_request(settings, "POST", "/v1/chat", json_body=body), True)


def read_file(file: FileInput) -> bytes:
    """The bytes of an upload: bytes as they are, a path's file, or a binary file object."""
    if isinstance(file, bytes):
        return file
    if isinstance(file, str | os.PathLike):
        return Path(file).read_bytes()
    return file.read()


def create_upload(settings: Settings, file: FileInput) -> Operation[UploadResponse]:
    """POST /v1/uploads as multipart (the bytes are read once, so a retry resends them)."""
    data = read_file(file)
    files = {"image": ("image", data, "application/octet-stream")}
    return call(settings, UploadResponse, "POST", "/v1/uploads", files=files)


def image_path(image: str | ImageView | UploadResponse) -> str:
    """The download URL of an image: an id, a path or URL from an answer, or the view."""
    if isinstance(image, ImageView | UploadResponse):
        return image.url
    return image if image.startswith(("/", "http://", "https://")) else f"/v1/images/{image}"


def download_image(
    settings: Settings,
    image: str | ImageView | UploadResponse,
    output_format: str | None,
    quality: int | None,
) -> Operation[bytes]:
    """GET /v1/images/{id} (signed and presigned URLs too; redirects are followed)."""
    params = {"format": output_format, "quality": quality}
    path = image_path(image)
    response = yield from send(
        settings, lambda: build_request(settings, "GET", path, params=params)
    )
    return response.content


def get_job(settings: Settings, job_id: str, wait_s: int | None = None) -> Operation[JobView]:
    """GET /v1/jobs/{id}, with a bounded wait (`?wait=N`) if given."""
    return call(
        settings,
        JobView,
        "GET",
        f"/v1/jobs/{job_id}",
        params={"wait": wait_s},
        read_timeout_s=settings.timeout_s + (wait_s or 0),
    )


def wait_for_job(
    settings: Settings,
    job_id: str,
    timeout_s: float | None,
    clock: Callable[[], float] = time.monotonic,
) -> Operation[JobView]:
    """The job once terminal: bounded server-side waits in a row, no polling delay. Raise
    JobWaitTimeout after `timeout_s` (None: wait as long as it takes)."""
    deadline = None if timeout_s is None else clock() + timeout_s
    while True:
        left = MAX_WAIT_STEP_S if deadline is None else max(0.0, deadline - clock())
        job = yield from get_job(settings, job_id, min(MAX_WAIT_STEP_S, int(left)))
        if job.done:
            return job
        if deadline is not None and clock() >= deadline:
            raise JobWaitTimeout(job, timeout_s or 0.0)


def list_jobs(settings: Settings, params: Mapping[str, Any]) -> Operation[JobList]:
    return call(settings, JobList, "GET", "/v1/jobs", params=params)


def list_conversations(
    settings: Settings, params: Mapping[str, Any]
) -> Operation[ConversationList]:
    return call(settings, ConversationList, "GET", "/v1/conversations", params=params)


def get_conversation(
    settings: Settings, conversation_id: str, image_id: str | None
) -> Operation[ConversationView]:
    return call(
        settings,
        ConversationView,
        "GET",
        f"/v1/conversations/{conversation_id}",
        params={"image_id": image_id},
    )


def open_job_events(settings: Settings, job_id: str) -> Operation[httpx.Response]:
    path = f"/v1/jobs/{job_id}/events"
    headers = {"accept": "text/event-stream"}
    return send(settings, lambda: build_request(settings, "GET", path, headers=headers), True)


# ----------------------------------------------------------------------------- streams


class ChatStreamParser:
    """The lines of a streamed chat turn → `ChatDelta`s of the visible reply, then the
    `ChatResponse` (`event: chat.result`); `event: error` raises StreamError."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._result_seen = False

    def feed(self, line: str) -> ChatDelta | ChatResponse | None:
        event = self._decoder.feed(line)
        if event is None or event.data == "[DONE]":
            return None
        if event.event == "chat.result":
            self._result_seen = True
            return ChatResponse.model_validate_json(event.data)
        if event.event == "error":
            raise stream_error(event.data)
        chunk = json.loads(event.data)
        content = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
        return ChatDelta(content=content) if content else None

    def finish(self) -> None:
        """At the stream's end: a turn cut short (the gateway's stream bound, a shutdown)
        was not stored, so it is an error, not a quiet end."""
        if not self._result_seen:
            raise APIConnectionError("the chat stream ended before the turn's result")


def stream_error(data: str) -> StreamError:
    detail = json.loads(data).get("error", {})
    return StreamError(
        200, detail.get("message", data), type=detail.get("type"), field=detail.get("field")
    )


class JobEventFollower:
    """Follows a job's event stream to its terminal status across reconnects: the stream
    may end early (the gateway's stream bound, a restart, a dropped connection); a
    reconnect's first event is the job's current state, so nothing is lost."""

    def __init__(self, settings: Settings, job_id: str) -> None:
        self.settings = settings
        self.job_id = job_id
        self.finished = False
        self._reconnects = 0
        self._decoder = SSEDecoder()

    def open(self) -> Operation[httpx.Response]:
        self._decoder = SSEDecoder()
        return open_job_events(self.settings, self.job_id)

    def feed(self, line: str) -> JobEvent | PreviewEvent | None:
        event = self._decoder.feed(line)
        if event is None or self.finished:
            return None
        if event.event not in ("status", "progress", "preview"):
            return None
        self._reconnects = 0  # the stream works: count drops in a row only
        if event.event == "preview":
            return PreviewEvent.model_validate_json(event.data)
        job = JobView.model_validate_json(event.data)
        self.finished = job.done
        return JobEvent(event="status" if event.event == "status" else "progress", job=job)

    def reconnect(self, cause: Exception | None) -> None:
        """Count a stream that ended before the terminal status; raise once reconnects
        exceed `max_retries`."""
        self._reconnects += 1
        if self._reconnects > self.settings.max_retries:
            raise APIConnectionError(
                f"events of {self.job_id}: the stream ended {self._reconnects} times "
                "before the job did"
            ) from cause
