"""Instruction-based editing through the real gateway, the real worker (tiny models) and
the scripted mllm: `POST /v1/images` with `task: "edit"` (captions from the mllm, or
given), chat edit turns on the conversation's latest result ("now make it night") with
their lineage, and the 4xx/502 answers for edits that cannot run."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from services.gateway.tasks.edit import DESCRIBE_MESSAGE
from tests.support.http_api import assert_error, server_sent_events, wait_for_job
from tests.support.images import fetch_pixels, noise, png_b64, sent_image
from tests.support.scripted_mllm import ScriptedMllm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STEPS = 2
SOURCE = "a cat on a red sofa"
TARGET = "a parrot on a red sofa"


def _upload(api: httpx.Client, image: np.ndarray) -> str:
    response = api.post("/v1/uploads", json={"image": png_b64(image)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _assert_target_dialogue(request: dict[str, Any], image: np.ndarray, instruction: str) -> None:
    """The mllm got the target-caption dialogue: the image with the describe request, the
    source caption as its own answer, then the instruction."""
    describe, answer, ask = request["messages"][-3:]
    seen, text = sent_image({"messages": [describe]})
    assert text == DESCRIBE_MESSAGE and np.array_equal(seen, image)
    assert answer == {"role": "assistant", "content": f"<gen_image>{SOURCE}</gen_image>"}
    assert ask == {"role": "user", "content": instruction}


def test_images_edit_asks_the_mllm_for_both_captions_and_records_them(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    image = noise(64, 72, 1)
    image_id = _upload(api, image)
    scripted.reset()
    scripted.script(
        f"<gen_image>{SOURCE}</gen_image>", f"Swapping it. <gen_image>{TARGET}</gen_image>"
    )
    response = api.post(
        "/v1/images",
        json={
            "task": "edit",
            "image": {"id": image_id},
            "prompt": "swap the cat for a parrot",
            "edit_method": "diffedit",
            "steps": STEPS,
            "seed": 3,
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["task"] == "edit" and body["input_image_ids"] == [image_id]
    assert (body["source_caption"], body["target_caption"]) == (SOURCE, TARGET)
    assert body["prompt"] == body["refined_prompt"] == TARGET
    assert body["instruction"] == "swap the cat for a parrot"
    assert body["edit_method"] == "diffedit"

    describe, target = scripted.requests()
    seen, text = sent_image(describe)
    assert text == DESCRIBE_MESSAGE and np.array_equal(seen, image)
    _assert_target_dialogue(target, image, "swap the cat for a parrot")

    done = wait_for_job(api, body["id"])
    assert done["status"] == "succeeded", done["error"]
    assert (done["source_caption"], done["target_caption"]) == (SOURCE, TARGET)
    assert done["edit_method"] == "diffedit"
    [result] = done["images"]
    assert (result["width"], result["height"]) == (72, 64)
    assert fetch_pixels(api, result["url"]).shape == image.shape


def test_images_edit_with_both_captions_skips_the_mllm(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    image = noise(64, 64, 2)
    scripted.reset()
    response = api.post(
        "/v1/images",
        json={
            "task": "edit",
            "image": {"b64": png_b64(image)},
            "source_caption": SOURCE,
            "target_caption": TARGET,
            "edit_method": "p2p",
            "steps": STEPS,
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert scripted.requests() == []
    assert (body["source_caption"], body["target_caption"]) == (SOURCE, TARGET)
    assert body["refined_prompt"] is None and body["instruction"] is None
    done = wait_for_job(api, body["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["edit_method"] == "p2p" and done["source_caption"] == SOURCE
    # The inline image was stored once and is the job's input.
    stored = fetch_pixels(api, f"/v1/images/{done['input_image_ids'][0]}")
    assert np.array_equal(stored, image)


def test_images_edit_with_a_given_source_caption_asks_only_for_the_target(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    image = noise(64, 64, 3)
    scripted.reset()
    scripted.script(f"<gen_image>{TARGET}</gen_image>")
    response = api.post(
        "/v1/images",
        json={
            "task": "edit",
            "image": {"b64": png_b64(image)},
            "prompt": "swap the cat for a parrot",
            "source_caption": SOURCE,
            "steps": STEPS,
        },
    )
    assert response.status_code == 202, response.text
    assert response.json()["target_caption"] == TARGET
    [target] = scripted.requests()
    _assert_target_dialogue(target, image, "swap the cat for a parrot")


@pytest.mark.parametrize(
    ("replies", "needle"),
    [
        (["I cannot see anything."], "describing the image"),
        ([f"<gen_image>{SOURCE}</gen_image>", "Why would you?"], "no target caption"),
    ],
)
def test_images_edit_without_a_caption_from_the_mllm_is_502_and_queues_nothing(
    api: httpx.Client, scripted: ScriptedMllm, replies: list[str], needle: str
) -> None:
    image_id = _upload(api, noise(64, 64, 4))
    scripted.reset()
    scripted.script(*replies)
    response = api.post(
        "/v1/images",
        json={"task": "edit", "image": {"id": image_id}, "prompt": "swap the cat"},
    )
    assert needle in assert_error(response, 502)
    assert len(scripted.requests()) == len(replies)


@pytest.mark.parametrize(
    ("extra", "status", "field"),
    [
        ({}, 422, "prompt"),  # no instruction and no target caption
        ({"prompt": "x", "n": 2}, 422, "n"),
        ({"prompt": "x", "width": 64}, 422, "width"),
        ({"prompt": "x", "refine": True}, 422, "refine"),
        ({"prompt": "x", "strength": 0.5}, 422, "strength"),
        ({"prompt": "x", "control": {}}, 422, "control"),
        ({"prompt": "x", "edit_method": "magic"}, 422, "edit_method"),
        ({"prompt": "x", "source_caption": " "}, 422, "source_caption"),
    ],
)
def test_bad_edit_requests_are_4xx_before_the_mllm_is_asked(
    api: httpx.Client, scripted: ScriptedMllm, extra: dict[str, Any], status: int, field: str
) -> None:
    scripted.reset()
    payload = {"task": "edit", "image": {"b64": png_b64(noise(64, 64, 5))}, **extra}
    assert_error(api.post("/v1/images", json=payload), status, field)
    assert scripted.requests() == []


def test_images_edit_of_an_image_outside_the_size_limits_is_422(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    scripted.reset()
    payload = {"task": "edit", "image": {"b64": png_b64(noise(32, 64, 6))}, "prompt": "x"}
    assert "between 64 and" in assert_error(api.post("/v1/images", json=payload), 422, "image")


def test_chat_edit_turn_edits_the_latest_result_and_its_lineage_names_the_source(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    scripted.reset()
    scripted.script("<gen_image>a quiet street by day</gen_image>")
    first = api.post("/v1/chat", json={"message": "draw a street", "steps": STEPS}).json()
    conversation_id = first["conversation_id"]
    done_a = wait_for_job(api, first["jobs"][0]["id"])
    assert done_a["status"] == "succeeded", done_a["error"]
    image_a = done_a["images"][0]
    pixels_a = fetch_pixels(api, image_a["url"])

    scripted.script(
        f"<gen_image>{SOURCE}</gen_image>",
        "Night it is. <gen_image>a quiet street at night, street lamps</gen_image>",
    )
    response = api.post(
        "/v1/chat",
        json={
            "conversation_id": conversation_id,
            "message": "now make it night",
            "task": "edit",
            "steps": STEPS,
        },
    )
    assert response.status_code == 200, response.text
    turn = response.json()
    assert turn["source_image_id"] == image_a["id"] and turn["source_caption"] == SOURCE
    assert turn["reply"] == "Night it is."
    [job] = turn["jobs"]
    assert job["task"] == "edit" and job["input_image_ids"] == [image_a["id"]]
    assert job["source_caption"] == SOURCE
    assert job["target_caption"] == "a quiet street at night, street lamps"
    assert job["instruction"] == "now make it night"

    describe, target = scripted.requests()[-2:]
    assert np.array_equal(sent_image(describe)[0], pixels_a)
    # The turn's request: the conversation so far, then the edit dialogue.
    assert [m["role"] for m in target["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert target["messages"][0]["content"] == "draw a street"
    _assert_target_dialogue(target, pixels_a, "now make it night")

    done_b = wait_for_job(api, job["id"])
    assert done_b["status"] == "succeeded", done_b["error"]
    image_b = done_b["images"][0]
    assert (image_b["width"], image_b["height"]) == (image_a["width"], image_a["height"])

    view = api.get(f"/v1/conversations/{conversation_id}", params={"image_id": image_b["id"]})
    assert view.status_code == 200, view.text
    body = view.json()
    sources = [turn["source_image_id"] for turn in body["turns"]]
    assert sources == [None, None, image_a["id"], image_a["id"]]
    assert body["lineage"] == [
        {
            "image_id": image_b["id"],
            "job_id": job["id"],
            "task": "edit",
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


def test_chat_edit_of_a_named_image_with_a_method(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    image = noise(64, 64, 7)
    image_id = _upload(api, image)
    scripted.reset()
    scripted.script(f"<gen_image>{SOURCE}</gen_image>", f"<gen_image>{TARGET}</gen_image>")
    response = api.post(
        "/v1/chat",
        json={
            "message": "swap the cat for a parrot",
            "images": [{"id": image_id}],
            "edit_method": "p2p",  # names the task: no `task` needed
            "steps": STEPS,
        },
    )
    assert response.status_code == 200, response.text
    [job] = response.json()["jobs"]
    assert job["task"] == "edit" and job["edit_method"] == "p2p"
    assert job["input_image_ids"] == [image_id] and job["target_caption"] == TARGET
    turns = api.get(f"/v1/conversations/{response.json()['conversation_id']}").json()["turns"]
    assert [turn["source_image_id"] for turn in turns] == [image_id, image_id]


def test_streamed_chat_edit_turn_describes_first_then_streams_the_answer(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    image_id = _upload(api, noise(64, 64, 8))
    scripted.reset()
    scripted.script(f"<gen_image>{SOURCE}</gen_image>", f"Done. <gen_image>{TARGET}</gen_image>")
    payload = {
        "message": "swap the cat for a parrot",
        "images": [{"id": image_id}],
        "task": "edit",
        "stream": True,
    }
    with api.stream("POST", "/v1/chat", json=payload) as response:
        assert response.status_code == 200, response.read()
        events = [(event, data) for event, data in server_sent_events(response) if event]
    result = json.loads(next(data for event, data in events if event == "chat.result"))
    assert result["source_caption"] == SOURCE and result["reply"] == "Done."
    assert result["jobs"][0]["target_caption"] == TARGET
    describe, target = scripted.requests()
    assert not describe.get("stream") and target["stream"] is True
