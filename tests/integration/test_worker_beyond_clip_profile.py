"""The Beyond CLIP profile end to end: a real worker process with
`LLMGA_WORKER_PROFILE=tiny-beyond-clip` (building the tiny Llama and its encoder checkpoint
at start-up), the real gateway and the scripted mllm. Text-to-image runs with the LLM as the
UNet's text encoder through `POST /v1/images` and through chat; a CLIP-conditioned task
fails with a message naming what the profile lacks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.http_api import wait_for_job
from tests.support.images import fetch_pixels, noise, png_b64
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import Namespace, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# Past the 77 positions of CLIP (104 tokens of the tiny LLM tokenizer): one sequence, no
# chunks, nothing truncated.
LONG_PROMPT = " ".join(["a small wooden cabin in the forest with smoke from the chimney"] * 4)


@pytest.fixture(scope="module")
def worker(
    namespace: Namespace, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real worker process on the tiny Beyond CLIP profile."""
    env = {"LLMGA_WORKER_PROFILE": "tiny-beyond-clip"}
    with start_worker(namespace, tmp_path_factory.mktemp("models"), logs, env=env) as name:
        yield name


def test_images_api_runs_text_to_image_on_the_llm_encoder(
    api: httpx.Client, worker: str, logs: Path
) -> None:
    response = api.post(
        "/v1/images",
        json={"prompt": LONG_PROMPT, "width": 64, "height": 64, "steps": 3, "seed": 4},
    )
    assert response.status_code == 202, response.text
    done = wait_for_job(api, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["model_profile"] == "tiny-beyond-clip"
    assert done["prompt"] == LONG_PROMPT
    [image] = done["images"]
    assert fetch_pixels(api, image["url"]).shape == (64, 64, 3)
    # The worker logs what it encoded: every token, in one sequence.
    log = (logs / "worker.log").read_text()
    match = re.search(rf"job {done['id']} succeeded: (\d+) token\(s\) in 1 chunk\(s\)", log)
    assert match and int(match.group(1)) > 77


def test_a_chat_turn_generates_with_the_llm_encoder(
    api: httpx.Client, worker: str, mllm: ScriptedMllm
) -> None:
    prompt = "a large red circle on a blue background"
    mllm.script(f"Here it is. <gen_image> {prompt} </gen_image>")
    chat = api.post(
        "/v1/chat",
        json={"message": "draw a red circle", "width": 64, "height": 64, "steps": 2, "seed": 1},
    )
    assert chat.status_code == 200, chat.text
    [job] = chat.json()["jobs"]
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert (done["prompt"], done["model_profile"]) == (prompt, "tiny-beyond-clip")
    assert len(done["images"]) == 1


def test_inpainting_fails_naming_what_the_profile_lacks(api: httpx.Client, worker: str) -> None:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    response = api.post(
        "/v1/images",
        json={
            "task": "inpaint",
            "prompt": "a red apple",
            "image": {"b64": png_b64(noise(64, 64, 3))},
            "mask": {"b64": png_b64(mask)},
            "steps": 2,
        },
    )
    assert response.status_code == 202, response.text
    done = wait_for_job(api, response.json()["id"])
    assert done["status"] == "failed"
    assert done["error"] == (
        "task inpaint is not available: profile tiny-beyond-clip has no inpainting model loaded"
    )
