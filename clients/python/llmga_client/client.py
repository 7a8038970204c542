"""`Client` (blocking) and `AsyncClient` (asyncio): the same calls, the same results.

Both run the operations of `_core` (request building, retries, waits, parsing: written
once); what differs here is only how a request is sent and a pause is slept, and
`for` versus `async for` over a stream's lines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx

from . import _core
from ._core import FileInput, Operation, Send, Settings, Sleep
from .models import (
    ChatDelta,
    ChatResponse,
    ConversationList,
    ConversationView,
    ImagesResponse,
    ImageView,
    JobEvent,
    JobList,
    JobStatus,
    JobView,
    PreviewEvent,
    Task,
    UploadResponse,
)
from .params import ChatFields, ImagesFields

T = TypeVar("T")


def _list_params(**params: Any) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


# ============================================================================ blocking


class Client:
    """A blocking client of the LLMGA gateway.

    `base_url` (default LLMGA_BASE_URL, else http://127.0.0.1:8000) and `api_key` (default
    LLMGA_API_KEY; none needed when the gateway runs without auth). Failed requests are
    retried up to `max_retries` times: connection errors with exponential backoff from
    `retry_backoff` seconds; 429, 502, 503 and 504 after their `Retry-After` (not when it
    asks for more than `max_retry_after` seconds: the error is raised at once). `timeout`
    bounds each request (a `wait` adds its seconds). `http_client` replaces the client's
    own `httpx.Client` (proxies, custom transports; it should follow redirects, and
    stays yours to close).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_retry_after: float = 60.0,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.settings = Settings.create(
            base_url, api_key, timeout, max_retries, retry_backoff, max_retry_after, headers
        )
        # A client passed in stays the caller's to close.
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(follow_redirects=True)
        self.images = Images(self)
        self.uploads = Uploads(self)
        self.jobs = Jobs(self)
        self.conversations = Conversations(self)

    def run(self, operation: Operation[T]) -> T:
        """Run one operation of `_core`: send its requests, sleep its pauses."""
        step = next(operation)
        while True:
            try:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = operation.send(None)
                else:
                    step = operation.send(self._send(step))
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    def _send(self, step: Send) -> _core.Outcome:
        try:
            response = self._http.send(step.request, stream=step.stream)
        except httpx.TransportError as exc:
            return exc
        if step.stream and response.is_error:
            response.read()  # the error body, for the exception
            response.close()
        return response

    def chat(
        self, *, idempotency_key: str | None = None, **fields: Unpack[ChatFields]
    ) -> ChatResponse:
        """A chat turn (`POST /v1/chat`): the reply, the generation prompts and their
        jobs (queued). `idempotency_key`: default a fresh UUID (a retry never makes a
        second turn)."""
        return self.run(_core.create_chat_turn(self.settings, fields, idempotency_key))

    def chat_stream(self, **fields: Unpack[ChatFields]) -> Iterator[ChatDelta | ChatResponse]:
        """A chat turn streamed: `ChatDelta`s of the reply as the mllm writes it, then the
        `ChatResponse` (with the jobs). Raises StreamError on an error in the stream."""
        response = self.run(_core.open_chat_stream(self.settings, fields))
        parser = _core.ChatStreamParser()
        try:
            for line in response.iter_lines():
                item = parser.feed(line)
                if item is not None:
                    yield item
        finally:
            response.close()
        parser.finish()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Images:
    """Image jobs of every task, and image downloads."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        idempotency_key: str | None = None,
        wait: int | None = None,
        **fields: Unpack[ImagesFields],
    ) -> ImagesResponse:
        """Queue one job of `task` (`POST /v1/images`; default t2i). `wait`: up to that
        many seconds (gateway bound: 60) for the job to end before answering."""
        settings = self._client.settings
        return self._client.run(_core.create_image_job(settings, fields, idempotency_key, wait))

    def download(
        self,
        image: str | ImageView | UploadResponse,
        *,
        format: str | None = None,
        quality: int | None = None,
    ) -> bytes:
        """The image's bytes (PNG; `format` jpeg or webp converts). `image`: an id, a URL
        from an answer, or the image itself."""
        return self._client.run(_core.download_image(self._client.settings, image, format, quality))

    def delete(self, image_id: str) -> None:
        self._client.run(
            _core.no_content(self._client.settings, "DELETE", f"/v1/images/{image_id}")
        )


class Uploads:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, file: FileInput) -> UploadResponse:
        """Upload an image (bytes, a path, or a binary file); refer to it by id later."""
        return self._client.run(_core.create_upload(self._client.settings, file))


class Jobs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, job_id: str, *, wait: int | None = None) -> JobView:
        """The job now, or after up to `wait` seconds if it has not ended by then."""
        return self._client.run(_core.get_job(self._client.settings, job_id, wait))

    def wait(self, job_id: str, *, timeout: float | None = None) -> JobView:
        """The job once it has ended (succeeded, failed or canceled); JobWaitTimeout
        after `timeout` seconds (None: no limit)."""
        settings = self._client.settings
        return self._client.run(_core.wait_for_job(settings, job_id, timeout))

    def cancel(self, job_id: str) -> JobView:
        """Cancel a queued or running job (ConflictError if it has already ended)."""
        settings = self._client.settings
        return self._client.run(_core.call(settings, JobView, "POST", f"/v1/jobs/{job_id}/cancel"))

    def delete(self, job_id: str) -> None:
        self._client.run(_core.no_content(self._client.settings, "DELETE", f"/v1/jobs/{job_id}"))

    def list(
        self,
        *,
        status: JobStatus | None = None,
        task: Task | None = None,
        conversation_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        """One page of the tenant's jobs, newest first; pass `next_cursor` for the next."""
        params = _list_params(
            status=status, task=task, conversation_id=conversation_id, limit=limit, cursor=cursor
        )
        return self._client.run(_core.list_jobs(self._client.settings, params))

    def events(self, job_id: str) -> Iterator[JobEvent | PreviewEvent]:
        """The job's changes as they happen (`status`, `progress`, `preview`), until its
        terminal status; a stream that ends early is reopened."""
        follower = _core.JobEventFollower(self._client.settings, job_id)
        while not follower.finished:
            response = self._client.run(follower.open())
            try:
                for line in response.iter_lines():
                    event = follower.feed(line)
                    if event is not None:
                        yield event
                    if follower.finished:
                        return
            except httpx.TransportError as exc:
                follower.reconnect(exc)
                continue
            finally:
                response.close()
            follower.reconnect(None)


class Conversations:
    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, conversation_id: str, *, image_id: str | None = None) -> ConversationView:
        """The conversation's turns; with `image_id`, that image's lineage too."""
        settings = self._client.settings
        return self._client.run(_core.get_conversation(settings, conversation_id, image_id))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> ConversationList:
        params = _list_params(limit=limit, cursor=cursor)
        return self._client.run(_core.list_conversations(self._client.settings, params))

    def delete(self, conversation_id: str) -> None:
        path = f"/v1/conversations/{conversation_id}"
        self._client.run(_core.no_content(self._client.settings, "DELETE", path))


# ============================================================================ asyncio


class AsyncClient:
    """The asyncio client: `Client`'s calls and options, awaited (streams: `async for`)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        max_retry_after: float = 60.0,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = Settings.create(
            base_url, api_key, timeout, max_retries, retry_backoff, max_retry_after, headers
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(follow_redirects=True)
        self.images = AsyncImages(self)
        self.uploads = AsyncUploads(self)
        self.jobs = AsyncJobs(self)
        self.conversations = AsyncConversations(self)

    async def run(self, operation: Operation[T]) -> T:
        """Run one operation of `_core`: send its requests, sleep its pauses."""
        step = next(operation)
        while True:
            try:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = operation.send(None)
                else:
                    step = operation.send(await self._send(step))
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    async def _send(self, step: Send) -> _core.Outcome:
        try:
            response = await self._http.send(step.request, stream=step.stream)
        except httpx.TransportError as exc:
            return exc
        if step.stream and response.is_error:
            await response.aread()
            await response.aclose()
        return response

    async def chat(
        self, *, idempotency_key: str | None = None, **fields: Unpack[ChatFields]
    ) -> ChatResponse:
        """See `Client.chat`."""
        return await self.run(_core.create_chat_turn(self.settings, fields, idempotency_key))

    async def chat_stream(
        self, **fields: Unpack[ChatFields]
    ) -> AsyncIterator[ChatDelta | ChatResponse]:
        """See `Client.chat_stream`."""
        response = await self.run(_core.open_chat_stream(self.settings, fields))
        parser = _core.ChatStreamParser()
        try:
            async for line in response.aiter_lines():
                item = parser.feed(line)
                if item is not None:
                    yield item
        finally:
            await response.aclose()
        parser.finish()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncImages:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        idempotency_key: str | None = None,
        wait: int | None = None,
        **fields: Unpack[ImagesFields],
    ) -> ImagesResponse:
        """See `Images.create`."""
        settings = self._client.settings
        return await self._client.run(
            _core.create_image_job(settings, fields, idempotency_key, wait)
        )

    async def download(
        self,
        image: str | ImageView | UploadResponse,
        *,
        format: str | None = None,
        quality: int | None = None,
    ) -> bytes:
        settings = self._client.settings
        return await self._client.run(_core.download_image(settings, image, format, quality))

    async def delete(self, image_id: str) -> None:
        path = f"/v1/images/{image_id}"
        await self._client.run(_core.no_content(self._client.settings, "DELETE", path))


class AsyncUploads:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, file: FileInput) -> UploadResponse:
        return await self._client.run(_core.create_upload(self._client.settings, file))


class AsyncJobs:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self, job_id: str, *, wait: int | None = None) -> JobView:
        return await self._client.run(_core.get_job(self._client.settings, job_id, wait))

    async def wait(self, job_id: str, *, timeout: float | None = None) -> JobView:
        settings = self._client.settings
        return await self._client.run(_core.wait_for_job(settings, job_id, timeout))

    async def cancel(self, job_id: str) -> JobView:
        settings = self._client.settings
        return await self._client.run(
            _core.call(settings, JobView, "POST", f"/v1/jobs/{job_id}/cancel")
        )

    async def delete(self, job_id: str) -> None:
        path = f"/v1/jobs/{job_id}"
        await self._client.run(_core.no_content(self._client.settings, "DELETE", path))

    async def list(
        self,
        *,
        status: JobStatus | None = None,
        task: Task | None = None,
        conversation_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        params = _list_params(
            status=status, task=task, conversation_id=conversation_id, limit=limit, cursor=cursor
        )
        return await self._client.run(_core.list_jobs(self._client.settings, params))

    async def events(self, job_id: str) -> AsyncIterator[JobEvent | PreviewEvent]:
        """See `Jobs.events`."""
        follower = _core.JobEventFollower(self._client.settings, job_id)
        while not follower.finished:
            response = await self._client.run(follower.open())
            try:
                async for line in response.aiter_lines():
                    event = follower.feed(line)
                    if event is not None:
                        yield event
                    if follower.finished:
                        return
            except httpx.TransportError as exc:
                follower.reconnect(exc)
                continue
            finally:
                await response.aclose()
            follower.reconnect(None)


class AsyncConversations:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self, conversation_id: str, *, image_id: str | None = None) -> ConversationView:
        settings = self._client.settings
        return await self._client.run(_core.get_conversation(settings, conversation_id, image_id))

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> ConversationList:
        params = _list_params(limit=limit, cursor=cursor)
        return await self._client.run(_core.list_conversations(self._client.settings, params))

    async def delete(self, conversation_id: str) -> None:
        path = f"/v1/conversations/{conversation_id}"
        await self._client.run(_core.no_content(self._client.settings, "DELETE", path))
