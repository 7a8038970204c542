"""The SDXL profile end to end: a real worker process with `LLMGA_WORKER_PROFILE=tiny-sdxl`
(building its tiny SDXL models at start-up), the real gateway, `POST /v1/images` for a
text-to-image job with a long prompt and an inpaint job."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.http_api import wait_for_job
from tests.support.images import fetch_pixels, noise, png_b64
from tests.support.services import Namespace, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# Past twice the 75 tokens one CLIP chunk holds (167 tokens with the tiny tokenizer):
# encoded in three chunks by both text encoders.
LONG_PROMPT = ", ".join(["a small wooden cabin in the forest with smoke from the chimney"] * 8)


@pytest.fixture(scope="module")
def worker(
    namespace: Namespace, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real worker process on the tiny SDXL models."""
    env = {"LLMGA_WORKER_PROFILE": "tiny-sdxl"}
    with start_worker(namespace, tmp_path_factory.mktemp("models"), logs, env=env) as name:
        yield name


def test_sdxl_text_to_image_with_a_long_prompt(api: httpx.Client, worker: str, logs: Path) -> None:
    response = api.post(
        "/v1/images",
        json={"prompt": LONG_PROMPT, "width": 96, "height": 64, "steps": 3, "seed": 4},
    )
    assert response.status_code == 202, response.text
    done = wait_for_job(api, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["model_profile"] == "tiny-sdxl"
    assert done["prompt"] == LONG_PROMPT  # recorded whole: nothing was truncated
    assert done["progress"] == {"step": 3, "total": 3}
    [image] = done["images"]
    assert (image["width"], image["height"], image["seed"]) == (96, 64, 4)
    assert fetch_pixels(api, image["url"]).shape == (64, 96, 3)
    # The worker logs what it encoded: every token, in three chunks.
    log = (logs / "worker.log").read_text()
    assert re.search(rf"job {done['id']} succeeded: \d{{3}} token\(s\) in 3 chunk\(s\)", log)


def test_sdxl_inpaint_keeps_every_pixel_outside_the_mask(api: httpx.Client, worker: str) -> None:
    image = noise(64, 80, 3)
    mask = np.zeros((64, 80), dtype=np.uint8)
    mask[16:48, 24:56] = 255
    response = api.post(
        "/v1/images",
        json={
            "task": "inpaint",
            "prompt": "a red apple on a wooden table",
            "image": {"b64": png_b64(image)},
            "mask": {"b64": png_b64(mask)},
            "steps": 5,
            "seed": 9,
        },
    )
    assert response.status_code == 202, response.text
    done = wait_for_job(api, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    # The profile's inpainting strength (0.8, SDXL's) runs int(5 x 0.8) = 4 steps.
    assert done["progress"] == {"step": 4, "total": 4}
    [result] = done["images"]
    pixels = fetch_pixels(api, result["url"])
    hole = mask == 255
    assert pixels.shape == image.shape
    assert np.array_equal(pixels[~hole], image[~hole])
    assert not np.array_equal(pixels[hole], image[hole])
