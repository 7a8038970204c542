"""Client-side helpers for tests that talk to the gateway over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

ACTIVE_STATUSES = {"queued", "running"}


def assert_error(response: httpx.Response, status: int, field: str | None = None) -> str:
    """Check the API's error shape and status (and `field` if given); return the message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"type", "message", "field"} and error["message"]
    if field is not None:
        assert error["field"] == field, error
    return str(error["message"])


def wait_for_job(
    api: httpx.Client, job_id: str, timeout_s: float = 60, wait_s: int = 0
) -> dict[str, Any]:
    """Poll `GET /v1/jobs/{id}` until the job ends; return its last view. With `wait_s`,
    each GET is a bounded wait (`?wait=N`) that answers as soon as the job ends: no polling
    delay (benchmarks time it)."""
    deadline = time.monotonic() + timeout_s
    params = {"wait": wait_s} if wait_s else None
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", params=params).json()
        assert job["status"] in {"queued", "running", "succeeded", "failed", "canceled"}
        if job["status"] not in ACTIVE_STATUSES:
            return job
        if not wait_s:
            time.sleep(0.1)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s}s")


def server_sent_events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a `text/event-stream` response as they arrive; comments
    (keep-alives) come as ("", ": comment text")."""
    event, data = "", []
    for line in response.iter_lines():
        if line.startswith(":"):
            yield "", line
        elif line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
        elif not line and data:
            yield event or "message", "\n".join(data)
            event, data = "", []


def job_events(api: httpx.Client, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Follow `GET /v1/jobs/{id}/events` to its end: (event name, Job) pairs."""
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data in server_sent_events(response):
            if event:
                yield event, json.loads(data)
