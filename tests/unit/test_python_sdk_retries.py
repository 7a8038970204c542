"""The Python SDK's retries over real HTTP, against a local server that fails on purpose:
a dropped connection, then a 503 with Retry-After, then the answer. Both clients (they
share one retry implementation) resend, a create keeps its one Idempotency-Key across the
attempts, and retries are bounded by `max_retries`. (Against the real gateway's 429:
tests/integration/test_python_sdk.py.)"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from llmga_client import APIConnectionError, AsyncClient, Client, ServerError

JOB = {
    "id": "job_1",
    "task": "t2i",
    "status": "queued",
    "progress": {"step": 0, "total": 0},
    "events_url": "/v1/jobs/job_1/events",
    "images": [],
    "prompt": "an owl",
    "negative_prompt": "",
    "created_at": 1.0,
    "timings": {"encode_s": 0.0, "denoise_s": 0.0, "decode_s": 0.0},
}


def free_url() -> str:
    """A URL where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@dataclass
class FlakyGateway:
    """Answers the n-th request of each run: 1st dropped, 2nd 503 (Retry-After: 0),
    3rd the answer. Records each request's Idempotency-Key."""

    url: str
    keys: list[str | None] = field(default_factory=list)


@pytest.fixture
def flaky() -> Iterator[FlakyGateway]:
    box: list[FlakyGateway] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            gateway = box[0]
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            gateway.keys.append(self.headers.get("Idempotency-Key"))
            attempt = len(gateway.keys)
            if attempt == 1:
                self.close_connection = True  # no answer at all
                return
            if attempt == 2:
                self._json(503, {"error": {"type": "service_unavailable", "message": "busy"}})
                return
            body = {"data": [], "next_cursor": None} if self.command == "GET" else JOB
            self._json(200 if self.command == "GET" else 202, body)

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 503:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(FlakyGateway(url=f"http://127.0.0.1:{server.server_address[1]}"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield box[0]
    server.shutdown()
    server.server_close()


def test_a_drop_and_a_503_are_retried_with_one_idempotency_key(flaky: FlakyGateway) -> None:
    with Client(flaky.url, retry_backoff=0.01) as client:
        job = client.images.create(prompt="an owl")
    assert job.id == "job_1"
    assert len(flaky.keys) == 3
    assert flaky.keys[0] and len(set(flaky.keys)) == 1  # the same key on every attempt


def test_the_async_client_retries_the_same_way(flaky: FlakyGateway) -> None:
    async def scenario() -> None:
        async with AsyncClient(flaky.url, retry_backoff=0.01) as client:
            page = await client.jobs.list()
        assert page.data == [] and page.next_cursor is None

    asyncio.run(scenario())
    assert len(flaky.keys) == 3


def test_retries_are_bounded_and_the_last_error_is_raised(flaky: FlakyGateway) -> None:
    client = Client(flaky.url, retry_backoff=0.01, max_retries=1)
    with client, pytest.raises(ServerError) as refused:
        client.jobs.list()
    assert refused.value.status == 503 and refused.value.type == "service_unavailable"
    assert refused.value.retry_after == 0
    assert len(flaky.keys) == 2


def test_no_gateway_is_a_connection_error_after_the_retries() -> None:
    attempts: list[str] = []
    hooks = {"request": [lambda request: attempts.append(request.url.path)]}
    http = httpx.Client(event_hooks=hooks)
    client = Client(free_url(), retry_backoff=0.01, max_retries=2, http_client=http)
    with client, pytest.raises(APIConnectionError):
        client.jobs.get("job_1")
    assert attempts == ["/v1/jobs/job_1"] * 3
