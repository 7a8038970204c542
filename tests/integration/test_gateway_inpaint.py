"""Inpaint and outpaint through the real gateway, the real worker (tiny models) and the
scripted mllm: `POST /v1/images` with `task: inpaint | outpaint`, chat turns with an image
and a mask, and the 4xx answers for inputs the worker would reject."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.http_api import assert_error, wait_for_job
from tests.support.images import fetch_pixels, noise, png_b64, sent_image
from tests.support.scripted_mllm import ScriptedMllm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STEPS = 3


def box_mask(height: int, width: int) -> np.ndarray:
    """Greyscale: white (regenerate) in a box, black elsewhere."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[16:48, 24:56] = 255
    return mask


def test_images_inpaint_keeps_every_pixel_outside_the_mask(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    image, mask = noise(64, 80, 1), box_mask(64, 80)
    scripted.reset()
    scripted.script("Sure. <gen_image>a red apple on a wooden table, soft light</gen_image>")
    response = api.post(
        "/v1/images",
        json={
            "task": "inpaint",
            "prompt": "an apple",
            "refine": True,
            "image": {"b64": png_b64(image)},
            "mask": {"b64": "data:image/png;base64," + png_b64(mask)},
            "steps": STEPS,
            "seed": 7,
            "strength": 1.0,
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["task"] == "inpaint" and body["refined_prompt"].startswith("a red apple")
    assert len(body["input_image_ids"]) == 1 and body["mask_image_id"]
    assert body["strength"] == 1.0

    # The mllm saw the masked image: the region to regenerate black, the rest unchanged.
    seen, _ = sent_image(scripted.requests()[-1])
    hole = mask == 255
    assert (seen[hole] == 0).all() and np.array_equal(seen[~hole], image[~hole])

    done = wait_for_job(api, body["id"])
    assert done["status"] == "succeeded", done["error"]
    [result] = done["images"]
    assert (result["width"], result["height"]) == (80, 64)
    pixels = fetch_pixels(api, result["url"])
    assert pixels.shape == image.shape
    assert np.array_equal(pixels[~hole], image[~hole])
    # The inputs were stored once and are downloadable by id.
    stored = fetch_pixels(api, f"/v1/images/{body['input_image_ids'][0]}")
    assert np.array_equal(stored, image)


def test_images_outpaint_grows_the_canvas_and_keeps_the_original(
    api: httpx.Client, worker: str
) -> None:
    image = noise(64, 64, 2)
    upload = api.post("/v1/uploads", json={"image": png_b64(image)})
    assert upload.status_code == 201, upload.text
    image_id = upload.json()["id"]
    response = api.post(
        "/v1/images",
        json={
            "task": "outpaint",
            "prompt": "a wide valley",
            "image": {"id": image_id},
            "outpaint": {"left": 16, "right": 8, "bottom": 24},
            "steps": STEPS,
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["input_image_ids"] == [image_id] and body["mask_image_id"] is None
    assert body["outpaint"] == {"left": 16, "top": 0, "right": 8, "bottom": 24, "ratio": None}

    done = wait_for_job(api, body["id"])
    assert done["status"] == "succeeded", done["error"]
    [result] = done["images"]
    assert (result["width"], result["height"]) == (64 + 16 + 8, 64 + 24)
    pixels = fetch_pixels(api, result["url"])
    assert np.array_equal(pixels[0:64, 16:80], image)


def test_chat_inpaint_turn_shows_the_mllm_the_masked_image_and_starts_inpaint_jobs(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    image = noise(64, 64, 3)
    # RGBA, transparent where to regenerate (OpenAI's edit semantics).
    mask = np.full((64, 64, 4), 255, dtype=np.uint8)
    mask[8:40, 8:40, 3] = 0
    hole = mask[..., 3] == 0
    scripted.reset()
    scripted.script(
        "A cat it is. <gen_image>a sleeping grey cat</gen_image> or "
        "<gen_image>a ginger cat, awake</gen_image>"
    )
    response = api.post(
        "/v1/chat",
        json={
            "message": "put a cat there",
            "images": [{"b64": png_b64(image)}],
            "mask": {"b64": png_b64(mask)},
            "steps": STEPS,
            "seed": 3,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["generation_prompts"] == ["a sleeping grey cat", "a ginger cat, awake"]
    jobs = body["jobs"]
    assert [job["task"] for job in jobs] == ["inpaint", "inpaint"]
    image_ids = {job["input_image_ids"][0] for job in jobs}
    mask_ids = {job["mask_image_id"] for job in jobs}
    assert len(image_ids) == 1 and len(mask_ids) == 1  # stored once, used by both jobs

    seen, text = sent_image(scripted.requests()[-1])
    assert text == "put a cat there"
    assert (seen[hole] == 0).all() and np.array_equal(seen[~hole], image[~hole])

    conversation = api.get(f"/v1/conversations/{body['conversation_id']}").json()
    user_turn = conversation["turns"][0]
    assert user_turn["image_ids"] == [*image_ids, *mask_ids]
    assert user_turn["text"] == "put a cat there"  # ids only: no pixels in the history

    for job in jobs:
        done = wait_for_job(api, job["id"])
        assert done["status"] == "succeeded", done["error"]
        pixels = fetch_pixels(api, done["images"][0]["url"])
        assert np.array_equal(pixels[~hole], image[~hole])


def test_chat_outpaint_turn_is_inferred_from_the_inputs(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    image = noise(64, 64, 4)
    scripted.reset()
    scripted.script("<gen_image>a beach at dusk</gen_image>")
    response = api.post(
        "/v1/chat",
        json={
            "message": "show more of it",
            "images": [{"b64": png_b64(image)}],
            "outpaint": {"ratio": 0.25},
            "steps": STEPS,
        },
    )
    assert response.status_code == 200, response.text
    [job] = response.json()["jobs"]
    assert job["task"] == "outpaint" and job["outpaint"]["ratio"] == 0.25
    seen, _ = sent_image(scripted.requests()[-1])
    assert seen.shape == (96, 96, 3)  # the extended canvas, border black
    assert np.array_equal(seen[16:80, 16:80], image) and (seen[:16] == 0).all()


IMAGE_64 = {"b64": png_b64(noise(64, 64, 5))}
MASK_64 = {"b64": png_b64(box_mask(64, 64))}


@pytest.mark.parametrize(
    ("payload", "status", "field", "needle"),
    [
        (
            {"mask": {"b64": png_b64(box_mask(64, 72))}},
            422,
            "mask",
            "the mask is 72x64 but the image is 64x64",
        ),
        (
            {"mask": {"b64": png_b64(np.zeros((64, 64), dtype=np.uint8))}},
            422,
            "mask",
            "the mask selects no pixel to regenerate; white = regenerate (or transparent alpha)",
        ),
        ({"width": 64}, 422, "width", "the output takes the input image's size"),
        ({"mask": {"b64": "%%% not base64 %%%"}}, 422, "mask.b64", "base64"),
        ({"image": {"id": "img_nope"}}, 404, None, "image.id: image 'img_nope' not found"),
        ({"mask": {"id": "img_nope"}}, 404, None, "mask.id"),
        ({"mask": None}, 422, "mask", "inpaint needs a mask"),
        ({"image": None}, 422, "image", "inpaint needs an input image"),
        ({"strength": 0}, 422, "strength", "greater than 0"),
        ({"outpaint": {"left": 8}}, 422, "outpaint", "only for task 'outpaint'"),
    ],
)
def test_bad_inpaint_requests_are_4xx_naming_the_field(
    api: httpx.Client, payload: dict[str, Any], status: int, field: str | None, needle: str
) -> None:
    body = {"task": "inpaint", "prompt": "x", "image": IMAGE_64, "mask": MASK_64, **payload}
    body = {key: value for key, value in body.items() if value is not None}
    message = assert_error(api.post("/v1/images", json=body), status, field)
    assert needle in message


@pytest.mark.parametrize(
    ("outpaint", "field", "needle"),
    [
        ({"left": 8, "ratio": 0.5}, "outpaint", "not both"),
        ({}, "outpaint", "extend at least one side"),
        ({"left": 2000}, "outpaint", "the extended width is 2064; it must be between 64 and 2048"),
        ({"top": 4000}, "outpaint.top", "less than or equal to 2048"),
        ({"ratio": 5}, "outpaint.ratio", "less than or equal to 4"),
        ({"ratio": 0.001}, "outpaint", "extends no side"),
    ],
)
def test_bad_outpaint_requests_are_422_naming_the_field(
    api: httpx.Client, outpaint: dict[str, Any], field: str, needle: str
) -> None:
    body = {"task": "outpaint", "prompt": "x", "image": IMAGE_64, "outpaint": outpaint}
    assert needle in assert_error(api.post("/v1/images", json=body), 422, field)


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"task": "t2i"}, 422, "mask"),
        ({"task": "outpaint"}, 422, "mask"),
        ({"outpaint": {"left": 8}}, 422, "outpaint"),
        ({"images": [IMAGE_64, IMAGE_64]}, 422, "images"),
        ({"images": []}, 422, "images"),
        ({"mask": {"b64": png_b64(box_mask(64, 72))}}, 422, "mask"),
        ({"images": [{"id": "img_nope"}]}, 404, None),
        ({"height": 64}, 422, "height"),
    ],
)
def test_bad_chat_inpaint_turns_are_4xx_before_the_mllm_is_asked(
    api: httpx.Client,
    scripted: ScriptedMllm,
    payload: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    scripted.reset()
    body = {"message": "fill it", "images": [IMAGE_64], "mask": MASK_64, **payload}
    assert_error(api.post("/v1/chat", json=body), status, field)
    assert scripted.requests() == []


def test_chat_with_an_image_alone_is_similar_and_takes_no_strength(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    """An image alone is a 'similar' turn (tests/integration/test_gateway_similar_lineage.py);
    inpaint/outpaint options do not fit it."""
    scripted.reset()
    body = {"message": "like this", "images": [IMAGE_64], "strength": 0.5}
    assert "not 'similar'" in assert_error(api.post("/v1/chat", json=body), 422, "strength")
    assert scripted.requests() == []
