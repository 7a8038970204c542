"""ControlNet and restore through the real gateway, the real worker (tiny models) and the
scripted mllm: `POST /v1/images` with `task: "controlnet"` (canny edges computed by the
worker, or a preprocessed edge map), a chat ControlNet turn (the mllm's prompt, the image
as control), `task: "restore"` (outside the mask the result is the reference exactly), and
`restore: false` on inpaint passed to the worker."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.http_api import assert_error, wait_for_job
from tests.support.images import fetch_pixels, noise, png_b64, sent_image
from tests.support.scripted_mllm import ScriptedMllm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STEPS = 2


def _box_mask(height: int, width: int) -> np.ndarray:
    """Greyscale: white (generated / regenerate) in a box, black elsewhere."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[16:48, 16:40] = 255
    return mask


def _squares(height: int, width: int) -> np.ndarray:
    """A photo-like control source with strong edges: bright squares on a dark ground."""
    image = np.full((height, width, 3), 30, dtype=np.uint8)
    image[8:32, 8:32] = 220
    image[40:56, 24:60] = 160
    return image


# --------------------------------------------------------------------------- controlnet


def test_images_controlnet_with_canny_computed_by_the_worker(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    scripted.reset()
    source = _squares(64, 72)
    response = api.post(
        "/v1/images",
        json={
            "task": "controlnet",
            "prompt": "two houses in a field",
            "image": {"b64": png_b64(source)},
            "control": {"low_threshold": 50, "high_threshold": 150, "conditioning_scale": 0.8},
            "steps": STEPS,
            "seed": 5,
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["task"] == "controlnet" and body["prompt"] == "two houses in a field"
    assert body["control"] == {
        "type": "canny",
        "preprocessed": False,
        "conditioning_scale": 0.8,
        "low_threshold": 50,
        "high_threshold": 150,
    }
    assert scripted.requests() == []  # no refine: the mllm is not asked
    stored = fetch_pixels(api, f"/v1/images/{body['input_image_ids'][0]}")
    assert np.array_equal(stored, source)

    done = wait_for_job(api, body["id"])
    assert done["status"] == "succeeded", done["error"]
    [result] = done["images"]
    # Width and height default to the control image's size.
    assert (result["width"], result["height"]) == (72, 64)
    assert fetch_pixels(api, result["url"]).shape == source.shape


def test_images_controlnet_with_a_preprocessed_edge_map_and_refine(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    edges = np.zeros((64, 64), dtype=np.uint8)
    edges[10, :] = edges[:, 20] = 255
    scripted.reset()
    scripted.script("<gen_image>a red barn, photo, dusk light</gen_image>")
    response = api.post(
        "/v1/images",
        json={
            "task": "controlnet",
            "prompt": "a barn",
            "refine": True,
            "image": {"b64": png_b64(edges)},
            "control": {"preprocessed": True},
            "width": 96,
            "steps": STEPS,
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["prompt"] == body["refined_prompt"] == "a red barn, photo, dusk light"
    assert body["control"]["preprocessed"] is True
    # refine: the mllm saw the control image with the refine message.
    seen, text = sent_image(scripted.requests()[-1])
    assert text == "Please generate an image: a barn"
    assert np.array_equal(seen[..., 0], edges)
    done = wait_for_job(api, body["id"])
    assert done["status"] == "succeeded", done["error"]
    assert (done["images"][0]["width"], done["images"][0]["height"]) == (96, 64)


def test_chat_controlnet_turn_uses_the_mllm_prompt_and_the_image_as_control(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    source = _squares(64, 64)
    scripted.reset()
    scripted.script("Here. <gen_image>a castle with two towers, watercolour</gen_image>")
    response = api.post(
        "/v1/chat",
        json={
            "message": "a castle with this layout",
            "task": "controlnet",
            "images": [{"b64": png_b64(source)}],
            "steps": STEPS,
        },
    )
    assert response.status_code == 200, response.text
    turn = response.json()
    [job] = turn["jobs"]
    assert job["task"] == "controlnet"
    assert job["prompt"] == "a castle with two towers, watercolour"
    assert job["input_image_ids"] == [turn["source_image_id"]]
    assert job["control"]["preprocessed"] is False  # canny computed by the worker
    seen, text = sent_image(scripted.requests()[-1])
    assert text == "a castle with this layout" and np.array_equal(seen, source)
    done = wait_for_job(api, job["id"])
    assert done["status"] == "succeeded", done["error"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"control": {"low_threshold": 220}}, "control.low_threshold"),
        ({"control": {"low_threshold": 0}}, "control.low_threshold"),
        ({"control": {"conditioning_scale": 3}}, "control.conditioning_scale"),
        ({"control": {"type": "depth"}}, "control.type"),
        ({"control": {"preprocessed": True, "high_threshold": 90}}, "control.high_threshold"),
        ({"mask": {"b64": png_b64(_box_mask(64, 64))}}, "mask"),
        ({"width": 60}, "width"),
    ],
)
def test_bad_controlnet_requests_are_422_naming_the_field(
    api: httpx.Client, scripted: ScriptedMllm, extra: dict[str, Any], field: str
) -> None:
    scripted.reset()
    payload = {
        "task": "controlnet",
        "prompt": "a house",
        "image": {"b64": png_b64(_squares(64, 64))},
        **extra,
    }
    assert_error(api.post("/v1/images", json=payload), 422, field)
    assert scripted.requests() == []


def test_control_belongs_to_controlnet_only(api: httpx.Client) -> None:
    message = assert_error(api.post("/v1/images", json={"prompt": "x", "control": {}}), 422)
    assert message == "control is only for task 'controlnet', not 't2i'"


# --------------------------------------------------------------------------- restore


def test_images_restore_keeps_the_reference_outside_the_mask(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    reference = noise(64, 64, 1)
    generated = reference.copy()
    mask = _box_mask(64, 64)
    inside = mask == 255
    # A generated region that is too bright: the restorer's job to fix, never the rest.
    generated[inside] = np.clip(generated[inside].astype(int) + 60, 0, 255).astype(np.uint8)
    generated[~inside] = 0  # outside, the result must come from the reference alone
    scripted.reset()
    response = api.post(
        "/v1/images",
        json={
            "task": "restore",
            "image": {"b64": png_b64(generated)},
            "reference": {"b64": png_b64(reference)},
            "mask": {"b64": png_b64(mask)},
            "seed": 1,
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["task"] == "restore" and len(body["input_image_ids"]) == 2
    assert body["mask_image_id"] and scripted.requests() == []
    done = wait_for_job(api, body["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["restore_used"] in ("diffrir", "color")
    pixels = fetch_pixels(api, done["images"][0]["url"])
    assert pixels.shape == reference.shape
    assert np.array_equal(pixels[~inside], reference[~inside])


@pytest.mark.parametrize(
    ("reference", "mask", "field", "needles"),
    [
        ((64, 72), (64, 64), "reference", ("72x64", "64x64")),
        ((64, 64), (48, 64), "mask", ("64x48", "64x64")),
    ],
)
def test_restore_inputs_of_another_size_are_422_naming_both_sizes(
    api: httpx.Client,
    reference: tuple[int, int],
    mask: tuple[int, int],
    field: str,
    needles: tuple[str, str],
) -> None:
    payload = {
        "task": "restore",
        "image": {"b64": png_b64(noise(64, 64, 2))},
        "reference": {"b64": png_b64(noise(*reference, 3))},
        "mask": {"b64": png_b64(_box_mask(*mask))},
    }
    message = assert_error(api.post("/v1/images", json=payload), 422, field)
    assert all(needle in message for needle in needles)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reference": None}, "reference"),
        ({"mask": None}, "mask"),
        ({"mask": {"b64": png_b64(np.zeros((64, 64), dtype=np.uint8))}}, "mask"),
        ({"prompt": "fix it"}, "prompt"),
        ({"steps": 4}, "steps"),
        ({"n": 2}, "n"),
        ({"restore": False}, "restore"),
    ],
)
def test_bad_restore_requests_are_422(
    api: httpx.Client, change: dict[str, Any], field: str
) -> None:
    payload: dict[str, Any] = {
        "task": "restore",
        "image": {"b64": png_b64(noise(64, 64, 4))},
        "reference": {"b64": png_b64(noise(64, 64, 5))},
        "mask": {"b64": png_b64(_box_mask(64, 64))},
    }
    payload.update(change)
    payload = {key: value for key, value in payload.items() if value is not None}
    assert_error(api.post("/v1/images", json=payload), 422, field)


# --------------------------------------------------------------------------- restore flag


def test_inpaint_restore_flag_reaches_the_worker(
    api: httpx.Client, scripted: ScriptedMllm, worker: str
) -> None:
    image, mask = noise(64, 64, 6), _box_mask(64, 64)
    common = {
        "task": "inpaint",
        "prompt": "a red apple",
        "image": {"b64": png_b64(image)},
        "mask": {"b64": png_b64(mask)},
        "steps": STEPS,
        "seed": 9,
    }
    off = api.post("/v1/images", json={**common, "restore": False})
    on = api.post("/v1/images", json=common)
    assert off.status_code == on.status_code == 202, (off.text, on.text)
    assert off.json()["restore"] is False and on.json()["restore"] is None
    done_off, done_on = wait_for_job(api, off.json()["id"]), wait_for_job(api, on.json()["id"])
    assert done_off["status"] == done_on["status"] == "succeeded"
    assert done_off["restore_used"] is None  # restoration was off
    assert done_on["restore_used"] in ("diffrir", "color")  # on by default
    keep = mask == 0
    for done in (done_off, done_on):
        assert np.array_equal(fetch_pixels(api, done["images"][0]["url"])[keep], image[keep])
