"""Observability across real processes: a request id that follows a job from the
gateway's logs to the worker's, the worker's Prometheus metrics after a job, and gateway
logs that hold neither API keys nor image data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http_api import wait_for_job
from tests.support.images import png_b64
from tests.support.processes import free_port
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import Namespace, create_api_key, start_gateway, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SIZE = {"width": 64, "height": 64, "steps": 3}
JSON_LOGS = {"LLMGA_LOG_FORMAT": "json"}


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def worker(
    namespace: Namespace, logs: Path, metrics_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {**JSON_LOGS, "LLMGA_WORKER_METRICS_PORT": str(metrics_port)}
    with start_worker(namespace, tmp_path_factory.mktemp("models"), logs, env=env) as name:
        yield name


@pytest.fixture(scope="module")
def api_key(namespace: Namespace) -> str:
    return create_api_key(namespace, "obs")


@pytest.fixture(scope="module")
def api(
    namespace: Namespace, worker: str, scripted: ScriptedMllm, logs: Path, api_key: str
) -> Iterator[httpx.Client]:
    env = {
        **namespace.env(),
        **JSON_LOGS,
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_AUTH_REQUIRED": "true",
    }
    headers = {"Authorization": f"Bearer {api_key}"}
    with (
        start_gateway(env, logs) as gateway,
        httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as client,
    ):
        yield client


def log_lines(path: Path, strict: bool = True) -> list[dict[str, Any]]:
    """The JSON objects of a service's log, one per line. `strict`: every line must be
    one (the worker's may start with what libraries print while they are imported,
    before logging is configured)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not strict:
        lines = [line for line in lines if line.startswith("{")]
    return [json.loads(line) for line in lines]


def test_request_id_follows_the_job_from_gateway_to_worker(api: httpx.Client, logs: Path) -> None:
    created = api.post(
        "/v1/images",
        json={"task": "t2i", "prompt": "a lighthouse", "seed": 3, **SIZE},
        headers={"X-Request-ID": "test-abc"},
    )
    assert created.status_code == 202, created.text
    assert created.headers["x-request-id"] == "test-abc"
    job_id = created.json()["id"]
    assert wait_for_job(api, job_id)["status"] == "succeeded"

    gateway = [line for line in log_lines(logs / "gateway.log") if line.get("request_id")]
    assert any(
        line["request_id"] == "test-abc" and job_id in line["message"] for line in gateway
    ), gateway
    assert all(line["service"] == "gateway" for line in gateway)

    worker = [
        line
        for line in log_lines(logs / "worker.log", strict=False)
        if line.get("job_id") == job_id
    ]
    assert worker, "no worker log line carries the job id"
    assert all(line["request_id"] == "test-abc" for line in worker), worker
    assert any("succeeded" in line["message"] for line in worker)
    assert {"ts", "level", "logger", "message", "service"} <= set(worker[0])


def test_an_invalid_request_id_is_replaced(api: httpx.Client) -> None:
    response = api.get("/v1/jobs/job_unknown", headers={"X-Request-ID": "not valid!"})
    assert response.status_code == 404
    assert len(response.headers["x-request-id"]) == 32


def test_worker_metrics_after_a_job(api: httpx.Client, metrics_port: int) -> None:
    created = api.post("/v1/images", json={"task": "t2i", "prompt": "an owl", **SIZE})
    assert wait_for_job(api, created.json()["id"])["status"] == "succeeded"

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    succeeded = value("llmga_worker_job_duration_seconds_count", task="t2i", status="succeeded")
    assert succeeded >= 1
    assert value("llmga_worker_job_duration_seconds_sum", task="t2i", status="succeeded") > 0
    # 3 steps per image: at least 2 step-to-step intervals per job.
    assert value("llmga_worker_denoise_step_duration_seconds_count") >= 2 * succeeded
    assert value("llmga_worker_jobs_in_progress") == 0
    assert value("llmga_worker_model_load_seconds", pipeline="StableDiffusionPipeline") > 0
    # The tiny profile runs on CPU here: no GPU memory gauges.
    assert not any(name.startswith("llmga_worker_gpu_memory") for name, _ in samples)


def test_gateway_logs_hold_neither_api_keys_nor_image_data(
    api: httpx.Client, scripted: ScriptedMllm, logs: Path, api_key: str
) -> None:
    image = png_b64(Image.new("RGB", (64, 64), "blue"))
    scripted.reset()
    scripted.script("A blue square. <gen_image>a blue square, flat colour</gen_image>")
    chat = api.post(
        "/v1/chat",
        json={"message": "describe it", "images": [{"b64": f"data:image/png;base64,{image}"}]},
        headers={"X-Request-ID": "test-secrets"},
    )
    assert chat.status_code == 200, chat.text
    # A refused key and an undecodable image must not be logged either.
    refused = httpx.post(
        str(api.base_url.join("/v1/chat")),
        json={"message": "x"},
        headers={"Authorization": f"Bearer {api_key}x"},
    )
    assert refused.status_code == 401
    bad = api.post("/v1/images", json={"task": "t2i", "prompt": "x", "image": {"b64": image[:-8]}})
    assert bad.status_code in (413, 422), bad.text
    for job in chat.json()["jobs"]:
        wait_for_job(api, job["id"])

    text = (logs / "gateway.log").read_text()
    assert any(line.get("request_id") == "test-secrets" for line in log_lines(logs / "gateway.log"))
    assert api_key not in text and api_key[len("llmga_") :][:16] not in text
    assert image[:48] not in text and image[-48:] not in text
