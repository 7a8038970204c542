"""The Python SDK's failure handling over real HTTP, against a local server that fails on
purpose (what the real gateway cannot be made to do on cue): dropped connections, a 503
with Retry-After, event streams that end before the job does, a chat stream cut short.
Both clients share one implementation; each case runs through the one that shows it.
(Against the real gateway's 429: tests/integration/test_python_sdk.py.)"""

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
from llmga_client import (
    APIConnectionError,
    AsyncClient,
    ChatDelta,
    Client,
    JobEvent,
    ServerError,
)

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
DROP = None  # an answer of the script: close the connection without answering
BUSY = (503, {"Retry-After": "0"}, json.dumps({"error": {"type": "service_unavailable"}}))


def answer(status: int, body: Any) -> tuple[int, dict[str, str], str]:
    return status, {"Content-Type": "application/json"}, json.dumps(body)


def job_stream(*statuses: str) -> tuple[int, dict[str, str], str]:
    """An event stream of the job in these statuses, then its end."""
    events = "".join(
        f"event: status\ndata: {json.dumps({**JOB, 'status': status})}\n\n" for status in statuses
    )
    return 200, {"Content-Type": "text/event-stream"}, ": keep-alive\n\n" + events


def free_url() -> str:
    """A URL where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@dataclass
class ScriptedServer:
    """Answers request n with `script[n]` (DROP: closes the connection unanswered);
    records each request's path and Idempotency-Key."""

    url: str
    script: list[tuple[int, dict[str, str], str] | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    box: list[ScriptedServer] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            scripted = box[0]
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            scripted.paths.append(self.path)
            scripted.keys.append(self.headers.get("Idempotency-Key"))
            reply = scripted.script[len(scripted.paths) - 1]
            if reply is DROP:
                self.close_connection = True
                return
            status, headers, body = reply
            data = body.encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

        def log_message(self, *args: Any) -> None:
            pass

    http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(ScriptedServer(url=f"http://127.0.0.1:{http_server.server_address[1]}"))
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    yield box[0]
    http_server.shutdown()
    http_server.server_close()


def test_a_drop_and_a_503_are_retried_with_one_idempotency_key(server: ScriptedServer) -> None:
    server.script = [DROP, BUSY, answer(202, JOB)]
    with Client(server.url, retry_backoff=0.01) as client:
        job = client.images.create(prompt="an owl")
    assert job.id == "job_1"
    assert len(server.keys) == 3
    assert server.keys[0] and len(set(server.keys)) == 1  # the same key on every attempt


def test_the_async_client_retries_the_same_way(server: ScriptedServer) -> None:
    server.script = [DROP, BUSY, answer(200, {"data": [], "next_cursor": None})]

    async def scenario() -> None:
        async with AsyncClient(server.url, retry_backoff=0.01) as client:
            page = await client.jobs.list()
        assert page.data == [] and page.next_cursor is None

    asyncio.run(scenario())
    assert server.paths == ["/v1/jobs"] * 3


def test_retries_are_bounded_and_the_last_error_is_raised(server: ScriptedServer) -> None:
    server.script = [DROP, BUSY, answer(200, {"data": [], "next_cursor": None})]
    client = Client(server.url, retry_backoff=0.01, max_retries=1)
    with client, pytest.raises(ServerError) as refused:
        client.jobs.list()
    assert refused.value.status == 503 and refused.value.type == "service_unavailable"
    assert refused.value.retry_after == 0
    assert len(server.paths) == 2


def test_no_gateway_is_a_connection_error_after_the_retries() -> None:
    attempts: list[str] = []
    hooks = {"request": [lambda request: attempts.append(request.url.path)]}
    http = httpx.Client(event_hooks=hooks)
    client = Client(free_url(), retry_backoff=0.01, max_retries=2, http_client=http)
    with client, pytest.raises(APIConnectionError):
        client.jobs.get("job_1")
    assert attempts == ["/v1/jobs/job_1"] * 3


def test_an_event_stream_that_ends_early_is_reopened_until_the_job_ends(
    server: ScriptedServer,
) -> None:
    server.script = [job_stream("queued"), DROP, job_stream("running", "succeeded")]
    with Client(server.url, retry_backoff=0.01) as client:
        events = list(client.jobs.events("job_1"))
    assert [(e.event, e.job.status) for e in events if isinstance(e, JobEvent)] == [
        ("status", "queued"),
        ("status", "running"),
        ("status", "succeeded"),
    ]
    assert server.paths == ["/v1/jobs/job_1/events"] * 3


def test_an_event_stream_that_keeps_ending_is_given_up(server: ScriptedServer) -> None:
    server.script = [job_stream()] * 3  # no event at all, three times
    client = Client(server.url, retry_backoff=0.01, max_retries=2)
    with client, pytest.raises(APIConnectionError, match="before the job did"):
        list(client.jobs.events("job_1"))
    assert len(server.paths) == 3


def test_a_chat_stream_cut_short_is_an_error(server: ScriptedServer) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "Here "}}]}
    body = f"data: {json.dumps(chunk)}\n\n: stream ended: the gateway is shutting down\n\n"
    server.script = [(200, {"Content-Type": "text/event-stream"}, body)]
    received: list[object] = []
    client = Client(server.url)
    with client, pytest.raises(APIConnectionError, match="before the turn's result"):
        received.extend(client.chat_stream(message="hello"))
    assert received == [ChatDelta(content="Here ")]  # what came before the cut
    assert server.keys == [None]  # a stream takes no Idempotency-Key
