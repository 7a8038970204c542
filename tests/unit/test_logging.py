"""Structured logs (services/common/logs.py), the gateway's request ids
(services/gateway/http/request_context.py) and the worker's metrics helpers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.logs import (
    JsonFormatter,
    TextFormatter,
    current_request_id,
    is_valid_request_id,
    log_context,
    redact,
)
from services.gateway.http.request_context import RequestIdMiddleware

KEY = "llmga_" + "A1b2C3d4" * 5 + "xyz"
B64 = "iVBORw0KGgo" + "AAAA" * 100


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("tests.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_context_ids_only_inside_it(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("before")
    with log_context(request_id="req-1", job_id="job_1"):
        logger.warning("inside %d", 1)
        with log_context(job_id="job_2"):
            logger.info("nested")
    logger.info("after")
    before, inside, nested, after = lines(stream)
    assert set(before) == {"ts", "level", "logger", "message", "service"}
    assert before["service"] == "test" and before["logger"] == "tests.logging"
    assert str(before["ts"]).endswith("Z")
    assert inside["message"] == "inside 1" and inside["level"] == "WARNING"
    assert (inside["request_id"], inside["job_id"]) == ("req-1", "job_1")
    assert (nested["request_id"], nested["job_id"]) == ("req-1", "job_2")
    assert "request_id" not in after and "job_id" not in after


def test_exceptions_are_one_line_with_their_traceback(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        raise ValueError(f"bad header Authorization: Bearer {KEY}")
    except ValueError:
        logger.exception("failed")
    (entry,) = lines(stream)
    assert "ValueError" in str(entry["exc"]) and KEY not in stream.getvalue()


def test_secrets_and_image_data_are_redacted() -> None:
    text = f"Authorization: Bearer {KEY} key={KEY} img=data:image/png;base64,{B64} raw={B64}"
    clean = redact(text)
    assert KEY not in clean and B64[:40] not in clean
    assert "Bearer <redacted>" in clean and "data:image/png;base64,<redacted>" in clean
    assert redact("job job_0123 queued, 512x512") == "job job_0123 queued, 512x512"


def test_text_format_is_redacted_and_shows_the_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (KEY,), None)
    with log_context(request_id="req-9"):
        line = TextFormatter().format(record)
    assert "[req-9]" in line and KEY not in line and "INFO x" in line


@pytest.mark.parametrize(
    ("value", "valid"),
    [("test-abc", True), ("a.b:c_D-1", True), ("x" * 128, True), ("", False),
     ("x" * 129, False), ("has space", False), ("new\nline", False), ("é", False)],
)  # fmt: skip
def test_request_id_validation(value: str, valid: bool) -> None:
    assert is_valid_request_id(value) is valid


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/sync")
    def sync_route() -> dict[str, str]:  # runs in a worker thread: the context follows
        return {"seen": current_request_id()}

    @app.get("/async")
    async def async_route() -> dict[str, str]:
        return {"seen": current_request_id()}

    app.add_middleware(RequestIdMiddleware)
    return app


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_a_valid_client_request_id_is_kept_and_returned(path: str) -> None:
    with TestClient(_app()) as client:
        response = client.get(path, headers={"X-Request-ID": "test-abc"})
    assert response.headers["x-request-id"] == "test-abc"
    assert response.json() == {"seen": "test-abc"}


@pytest.mark.parametrize("given", [None, "bad id with spaces", "y" * 200])
def test_a_missing_or_invalid_request_id_is_replaced(given: str | None) -> None:
    headers = {"X-Request-ID": given} if given is not None else {}
    with TestClient(_app()) as client:
        response = client.get("/async", headers=headers)
        unmatched = client.get("/nowhere")
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32 and request_id != given
    assert response.json() == {"seen": request_id}
    assert len(unmatched.headers["x-request-id"]) == 32  # a 404 carries one too
    assert current_request_id() == ""


def test_worker_metrics_helpers() -> None:
    from services.worker import metrics

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        value = metrics.REGISTRY.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    before = sample("llmga_worker_job_failures_total", {"task": "inpaint"})
    with metrics.job_in_progress():
        assert sample("llmga_worker_jobs_in_progress") == 1
    assert sample("llmga_worker_jobs_in_progress") == 0
    metrics.observe_job("inpaint", "failed", 0.5)
    assert sample("llmga_worker_job_failures_total", {"task": "inpaint"}) == before + 1
    labels = {"task": "inpaint", "status": "failed"}
    assert sample("llmga_worker_job_duration_seconds_count", labels) >= 1
    steps = sample("llmga_worker_denoise_step_duration_seconds_count")
    tick = metrics.step_timer()
    for _ in range(3):
        tick()
    assert sample("llmga_worker_denoise_step_duration_seconds_count") == steps + 2
    assert metrics.serve(0) is False
