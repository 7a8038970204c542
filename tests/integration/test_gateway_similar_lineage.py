"""Similar-image generation and multi-turn lineage through the real gateway, the real
worker (tiny models) and the scripted mllm: the mllm sees the image and its description
drives a t2i job that records its source; in a conversation, an outpaint turn without
`images` works on the latest result, and the conversation shows each image's lineage."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.http_api import assert_error, wait_for_job
from tests.support.images import noise, png_b64, sent_image
from tests.support.scripted_mllm import ScriptedMllm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STEPS = 2


def test_chat_similar_turn_describes_the_image_and_starts_a_t2i_job(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    image = noise(66, 83, 1)  # default output: 80x64 (multiples of 8, within 64..2048)
    scripted.reset()
    scripted.script("Here it is. <gen_image>a field of coloured static, fine grain</gen_image>")
    response = api.post(
        "/v1/chat",
        json={
            "message": "generate a similar image",
            "images": [{"b64": png_b64(image)}],
            "steps": STEPS,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    [job] = body["jobs"]
    assert job["task"] == "t2i" and job["prompt"] == "a field of coloured static, fine grain"
    source = job["input_image_ids"][0]
    assert body["source_image_id"] == source

    seen, text = sent_image(scripted.requests()[-1])
    assert text == "generate a similar image" and np.array_equal(seen, image)

    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert (done["images"][0]["width"], done["images"][0]["height"]) == (80, 64)

    turns = api.get(f"/v1/conversations/{body['conversation_id']}").json()["turns"]
    assert [turn["source_image_id"] for turn in turns] == [source, source]
    assert turns[1]["job_ids"] == [job["id"]]


def test_images_similar_with_and_without_a_prompt(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    image = noise(64, 64, 2)
    upload = api.post("/v1/uploads", json={"image": png_b64(image)}).json()
    scripted.reset()
    scripted.script("<gen_image>a grainy square</gen_image>", "<gen_image>grain, blue</gen_image>")
    response = api.post(
        "/v1/images",
        json={"task": "similar", "image": {"id": upload["id"]}, "steps": STEPS},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["task"] == "t2i" and body["prompt"] == "a grainy square"
    assert body["refined_prompt"] == "a grainy square"
    assert body["input_image_ids"] == [upload["id"]]
    seen, text = sent_image(scripted.requests()[-1])
    assert text == "Please generate a similar image." and np.array_equal(seen, image)

    sized = api.post(
        "/v1/images",
        json={
            "task": "similar",
            "image": {"id": upload["id"]},
            "prompt": "in blue",
            "width": 96,
            "steps": STEPS,
        },
    ).json()
    assert sent_image(scripted.requests()[-1])[1] == "in blue"
    done = wait_for_job(api, sized["id"])
    assert done["status"] == "succeeded", done["error"]
    assert (done["images"][0]["width"], done["images"][0]["height"]) == (96, 64)


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"task": "similar"}, 422, "image"),
        ({"task": "similar", "image": {"id": "img_nope"}}, 404, None),
        ({"task": "similar", "image": {"b64": "%%%"}}, 422, "image.b64"),
        (
            {"task": "similar", "image": {"b64": png_b64(noise(64, 64, 3))}, "strength": 0.5},
            422,
            "strength",
        ),
        ({"task": "t2i"}, 422, "prompt"),
    ],
)
def test_bad_similar_requests_are_4xx_before_the_mllm_is_asked(
    api: httpx.Client,
    scripted: ScriptedMllm,
    payload: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    scripted.reset()
    assert_error(api.post("/v1/images", json=payload), status, field)
    assert scripted.requests() == []


def test_images_similar_without_a_description_is_502(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    scripted.reset()
    scripted.script("I only chat.")
    image = {"b64": png_b64(noise(64, 64, 4))}
    response = api.post("/v1/images", json={"task": "similar", "image": image})
    assert "no generation prompt" in assert_error(response, 502)


def test_outpaint_turn_without_images_extends_the_latest_result_and_shows_its_lineage(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    scripted.reset()
    scripted.script(
        "<gen_image>a lighthouse on a cliff</gen_image>",
        "Extending it. <gen_image>a lighthouse on a cliff, sea to the left</gen_image>",
    )
    first = api.post("/v1/chat", json={"message": "draw a lighthouse", "steps": STEPS}).json()
    conversation_id = first["conversation_id"]
    assert first["source_image_id"] is None
    extend = {
        "conversation_id": conversation_id,
        "message": "extend it to the left",
        "outpaint": {"left": 32},
        "steps": STEPS,
    }
    # Turn 1's job has not succeeded yet (it is at most running): nothing to extend.
    early = api.post("/v1/chat", json=extend)
    if early.status_code == 409:
        assert "no job of this conversation has succeeded" in assert_error(early, 409, "images")
        assert len(scripted.requests()) == 1  # refused before the mllm was asked
    done_a = wait_for_job(api, first["jobs"][0]["id"])
    assert done_a["status"] == "succeeded", done_a["error"]
    image_a = done_a["images"][0]
    if early.status_code == 200:  # the tiny job was faster than the request: still fine
        second = early.json()
    else:
        response = api.post("/v1/chat", json=extend)
        assert response.status_code == 200, response.text
        second = response.json()

    [job_b] = second["jobs"]
    assert job_b["task"] == "outpaint" and job_b["input_image_ids"] == [image_a["id"]]
    assert second["source_image_id"] == image_a["id"]
    seen, text = sent_image(scripted.requests()[-1])
    assert text == "extend it to the left"
    assert seen.shape == (image_a["height"], image_a["width"] + 32, 3)
    assert (seen[:, :32] == 0).all()

    done_b = wait_for_job(api, job_b["id"])
    assert done_b["status"] == "succeeded", done_b["error"]
    image_b = done_b["images"][0]
    assert image_b["width"] == image_a["width"] + 32

    view = api.get(f"/v1/conversations/{conversation_id}", params={"image_id": image_b["id"]})
    assert view.status_code == 200, view.text
    body = view.json()
    sources = [turn["source_image_id"] for turn in body["turns"]]
    assert sources == [None, None, image_a["id"], image_a["id"]]
    assert body["turns"][3]["job_ids"] == [job_b["id"]]
    assert body["lineage"] == [
        {
            "image_id": image_b["id"],
            "job_id": job_b["id"],
            "task": "outpaint",
            "source_image_id": image_a["id"],
            "turn_index": 3,
        },
        {
            "image_id": image_a["id"],
            "job_id": first["jobs"][0]["id"],
            "task": "t2i",
            "source_image_id": None,
            "turn_index": 1,
        },
    ]
    assert api.get(f"/v1/conversations/{conversation_id}").json()["lineage"] is None
    missing = api.get(f"/v1/conversations/{conversation_id}", params={"image_id": "img_nope"})
    assert "img_nope" in assert_error(missing, 404, "image_id")

    # An image named by id works too, and a similar turn without images uses the latest.
    scripted.script("<gen_image>another lighthouse</gen_image>")
    again = api.post(
        "/v1/chat",
        json={
            "conversation_id": conversation_id,
            "message": "one more like this",
            "task": "similar",
            "steps": STEPS,
        },
    ).json()
    assert again["source_image_id"] == image_b["id"]
    assert again["jobs"][0]["input_image_ids"] == [image_b["id"]]


def test_image_turn_without_images_is_409_until_a_job_succeeded(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    scripted.reset()
    scripted.script("Just chatting.")  # no generation block: the turn starts no job
    first = api.post("/v1/chat", json={"message": "hello"}).json()
    response = api.post(
        "/v1/chat",
        json={
            "conversation_id": first["conversation_id"],
            "message": "extend it",
            "outpaint": {"left": 32},
        },
    )
    message = assert_error(response, 409, "images")
    assert "no job of this conversation has succeeded yet" in message
    assert response.json()["error"]["type"] == "no_result_image"
    assert len(scripted.requests()) == 1
    # Outside a conversation it is still a 422: there is nothing to default to.
    alone = api.post("/v1/chat", json={"message": "extend it", "outpaint": {"left": 32}})
    assert_error(alone, 422, "images")
