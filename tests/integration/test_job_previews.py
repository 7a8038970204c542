"""Previews while denoising, end to end: a real worker on the tiny models (a preview every
2 steps) stores small JPEGs from the latents, and the job's event stream sends them as
`preview` events before the job's final status; OpenAI's Images streaming sends them as
partial images before the completed image."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from tests.support.http_api import job_events
from tests.support.services import Namespace, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

EVERY = 2


@pytest.fixture(scope="module")
def worker(
    namespace: Namespace, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real worker that stores a preview every EVERY steps of each image."""
    env = {"LLMGA_WORKER_PREVIEW_EVERY": str(EVERY)}
    with start_worker(namespace, tmp_path_factory.mktemp("models"), logs, env=env) as name:
        yield name


@pytest.mark.usefixtures("worker")
def test_previews_arrive_before_the_final_status_as_jpegs_of_their_size(
    api: httpx.Client,
) -> None:
    body = {"task": "t2i", "prompt": "a lighthouse", "seed": 3, "width": 64, "height": 96}
    # While the worker runs a longer job (another batch key: more steps), the job under
    # test is still queued when its stream opens (a stream of an ended job sends no
    # previews).
    blocker = api.post("/v1/images", json={**body, "steps": 40})
    assert blocker.status_code == 202, blocker.text
    created = api.post("/v1/images", json={**body, "n": 2, "steps": 4})
    assert created.status_code == 202, created.text
    events = list(job_events(api, created.json()["id"]))
    assert events[0][0] == "status" and events[0][1]["status"] == "queued", events[0]

    names = [name for name, _ in events]
    assert names[-1] == "status" and events[-1][1]["status"] == "succeeded", events
    previews = [data for name, data in events if name == "preview"]
    # The job's two images denoise together: steps 2 and 4 of each, job-wide steps 4 and
    # 8 of 8 (both images have done that many steps), in order.
    assert [(p["image_index"], p["step"], p["total"]) for p in previews] == [
        (0, 4, 8),
        (1, 4, 8),
        (0, 8, 8),
        (1, 8, 8),
    ]
    succeeded = [i for i, (name, data) in enumerate(events) if data.get("status") == "succeeded"]
    preview_at = [i for i, name in enumerate(names) if name == "preview"]
    assert succeeded == [len(events) - 1] and max(preview_at) < succeeded[0]
    for preview in previews:
        response = api.get(preview["url"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(response.content))
        # One pixel per latent pixel: 64x96 images have 8x12 latents.
        assert image.format == "JPEG"
        assert image.size == (preview["width"], preview["height"]) == (8, 12)


@pytest.mark.usefixtures("worker")
def test_openai_generate_streams_partial_images_then_the_completed_one(
    api: httpx.Client,
) -> None:
    base_url = f"{api.base_url}".rstrip("/") + "/v1"
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        stream = client.images.generate(
            prompt="a lighthouse",
            size="64x96",
            stream=True,
            partial_images=2,
            extra_body={"steps": 4, "seed": 3},
        )
        events = list(stream)

    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    partials = [event for event in events if event.type == "image_generation.partial_image"]
    assert [event.partial_image_index for event in partials] == [0, 1]
    for event in partials:
        preview = Image.open(io.BytesIO(base64.b64decode(event.b64_json)))
        assert preview.format == "JPEG" and preview.size == (8, 12)
    completed = events[-1]
    assert completed.output_format == "png" and completed.size == "64x96"
    final = Image.open(io.BytesIO(base64.b64decode(completed.b64_json)))
    assert final.format == "PNG" and final.size == (64, 96)


def test_openai_edits_still_refuse_stream(api: httpx.Client) -> None:
    response = api.post(
        "/v1/images/variations",
        files={"image": ("a.png", _png(), "image/png")},
        data={"stream": "true"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "stream"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(out, format="PNG")
    return out.getvalue()
