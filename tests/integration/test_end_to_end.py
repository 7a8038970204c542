"""The whole backbone over real HTTP: gateway -> mllm -> Redis/Celery -> real worker
process -> PNG. The scripted mllm gives exact replies; one test uses the real local engine."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.http_api import wait_for_job
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import (
    HttpService,
    Namespace,
    start_gateway,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.usefixtures("worker"),  # every job here runs to the end
]

SIZE = {"width": 64, "height": 96, "steps": 4}


def fetch_png(api: httpx.Client, url: str) -> Image.Image:
    response = api.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_chat_turn_produces_an_image_of_the_requested_size(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    prompt = "a husky astronaut floating above the earth, detailed spacesuit, cinematic light"
    scripted.reset()
    scripted.script(f"Here is your husky! <gen_image> {prompt} </gen_image>")

    chat = api.post("/v1/chat", json={"message": "a husky astronaut", "seed": 5, **SIZE})
    assert chat.status_code == 200, chat.text
    body = chat.json()
    assert body["reply"] == "Here is your husky!"
    assert body["generation_prompts"] == [prompt]
    [job] = body["jobs"]
    assert job["status"] == "queued"

    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["prompt"] == prompt
    assert done["progress"] == {"step": SIZE["steps"], "total": SIZE["steps"]}
    [image] = done["images"]
    assert image["seed"] == 5
    assert fetch_png(api, image["url"]).size == (SIZE["width"], SIZE["height"])


def test_second_turn_sees_the_first_and_the_conversation_records_both(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    scripted.reset()
    first_reply = "A red fox. <gen_image>a red fox in fresh snow, morning light</gen_image>"
    scripted.script(first_reply, "At night. <gen_image>a red fox in snow under the stars")

    first = api.post("/v1/chat", json={"message": "a fox", **SIZE}).json()
    conversation_id = first["conversation_id"]
    second = api.post(
        "/v1/chat",
        json={"message": "make it night", "conversation_id": conversation_id, **SIZE},
    ).json()

    # The unterminated block still counts; the first turn reached the mllm's context.
    assert second["generation_prompts"] == ["a red fox in snow under the stars"]
    sent = scripted.requests()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "a fox" and sent[1]["content"] == first_reply

    conversation = api.get(f"/v1/conversations/{conversation_id}").json()
    assert [t["role"] for t in conversation["turns"]] == ["user", "assistant"] * 2
    assert conversation["turns"][3]["job_ids"] == [second["jobs"][0]["id"]]
    for job in (first["jobs"][0], second["jobs"][0]):
        assert wait_for_job(api, job["id"])["status"] == "succeeded"


def test_images_endpoint_runs_t2i_without_chat(api: httpx.Client) -> None:
    created = api.post(
        "/v1/images", json={"task": "t2i", "prompt": "a lighthouse", "n": 2, "seed": 9, **SIZE}
    )
    assert created.status_code == 202, created.text
    done = wait_for_job(api, created.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert [image["seed"] for image in done["images"]] == [9, 10]
    pixels = [fetch_png(api, image["url"]).tobytes() for image in done["images"]]
    assert pixels[0] != pixels[1], "two seeds gave the same image"


def test_images_come_back_in_the_requested_output_format(api: httpx.Client) -> None:
    created = api.post(
        "/v1/images",
        json={"prompt": "a lighthouse", "seed": 9, "output_format": "webp", "output_quality": 70}
        | SIZE,
    )
    assert created.status_code == 202, created.text
    done = wait_for_job(api, created.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    download = api.get(done["images"][0]["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "image/webp"
    image = Image.open(io.BytesIO(download.content))
    assert image.format == "WEBP" and image.size == (SIZE["width"], SIZE["height"])
    # The job read later still hands out the requested format.
    again = api.get(f"/v1/jobs/{done['id']}").json()
    assert "format=webp" in again["images"][0]["url"]
    refused = api.post("/v1/images", json={"prompt": "x", "output_quality": 70} | SIZE)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "output_quality"


def test_chat_with_the_real_local_mllm(
    namespace: Namespace, worker: str, local_mllm: HttpService, logs: Path
) -> None:
    """The generation prompt comes from the real local model, not from a template."""
    message = "a husky astronaut"
    with (
        start_gateway(
            {**namespace.env(), "LLMGA_MLLM_BASE_URL": f"{local_mllm.url}/v1"}, logs
        ) as gateway,
        httpx.Client(base_url=gateway.url, timeout=120) as api,
    ):
        assert api.get("/readyz").status_code == 200
        chat = api.post("/v1/chat", json={"message": message, **SIZE})
        assert chat.status_code == 200, chat.text
        body = chat.json()
        [prompt] = body["generation_prompts"]
        assert len(prompt) > len(message)
        assert "<gen_image>" not in body["reply"]
        done = wait_for_job(api, body["jobs"][0]["id"])
        assert done["status"] == "succeeded", done["error"]
        assert done["prompt"] == prompt
