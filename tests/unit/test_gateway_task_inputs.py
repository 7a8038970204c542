"""The gateway's checks of task inputs (services/gateway/tasks/): the
mask rule is the worker's exactly, outpaint geometry rounds as the worker does, and
task-specific fields that do not fit the task are 422 naming the field."""

from __future__ import annotations

from typing import Any, get_args

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from services.common.contract import Control, Edit, EditMethod, GenerationRequest, Outpaint, Task
from services.common.image_rules import mask_selection, outpaint_sides
from services.gateway.http.errors import ApiError
from services.gateway.mllm.client import ChatMessage
from services.gateway.protocol import ControlInput, ImageInput, OutpaintInput, TaskName
from services.gateway.tasks.inputs import TaskInputs, check_mask
from services.gateway.tasks.outpaint import outpaint_message
from services.gateway.tasks.table import FIELD_TASKS, TASKS, check_task_fields
from services.worker.masks import binarize_mask


def _masks() -> list[Image.Image]:
    """Masks of every mode a stored PNG can have, with values around the threshold."""
    rng = np.random.default_rng(0)
    gradient = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    rgb = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, rng.integers(0, 256, size=(16, 16), dtype=np.uint8)])
    opaque = np.dstack([rgb, np.full((16, 16), 255, dtype=np.uint8)])
    la = np.dstack([gradient, gradient[::-1]])
    palette = Image.fromarray(rgb).convert("P")
    palette.info["transparency"] = 0
    return [
        Image.fromarray(gradient, mode="L"),
        Image.fromarray(rgb, mode="RGB"),
        Image.fromarray(rgba, mode="RGBA"),
        Image.fromarray(opaque, mode="RGBA"),
        Image.fromarray(la, mode="LA"),
        palette,
    ]


@pytest.mark.parametrize("mask", _masks(), ids=lambda m: m.mode)
def test_mask_selection_is_the_workers_rule(mask: Image.Image) -> None:
    expected = binarize_mask(mask)
    assert np.array_equal(np.asarray(mask_selection(mask)) == 255, expected)


def test_check_mask_refuses_another_size_and_an_empty_selection() -> None:
    image = Image.new("RGB", (64, 48))
    with pytest.raises(ApiError) as error:
        check_mask(image, Image.new("L", (48, 64), 255), "mask")
    assert error.value.status_code == 422 and error.value.field == "mask"
    assert "48x64" in error.value.message and "64x48" in error.value.message

    for empty in (Image.new("L", (64, 48), 127), Image.new("RGBA", (64, 48), (0, 0, 0, 255))):
        with pytest.raises(ApiError) as error:
            check_mask(image, empty, "mask")
        assert error.value.status_code == 422
        assert "selects no pixel" in error.value.message

    selection = check_mask(image, Image.new("RGBA", (64, 48), (0, 0, 0, 0)), "mask")
    assert selection.getextrema() == (255, 255)  # transparent everywhere: regenerate all


def test_outpaint_ratio_rounds_like_the_worker() -> None:
    message = outpaint_message(OutpaintInput(ratio=0.25))
    assert message.ratio == pytest.approx(0.25)
    assert outpaint_sides(message, (64, 96)) == (16, 24, 16, 24)
    pixels = outpaint_message(OutpaintInput(left=8, bottom=16))
    assert outpaint_sides(pixels, (64, 64)) == (8, 0, 0, 16)


@pytest.mark.parametrize(
    "payload",
    [{}, {"left": 0}, {"left": 8, "ratio": 0.5}, {"ratio": 0}, {"ratio": 5}, {"top": -1}],
)
def test_outpaint_input_needs_pixels_or_a_ratio(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OutpaintInput.model_validate(payload)


_IMAGE = ImageInput(id="img_x")
_OUT = OutpaintInput(left=8)


@pytest.mark.parametrize(
    ("task", "fields", "field"),
    [
        ("inpaint", {"has_image": True, "mask": _IMAGE, "width": 64}, "width"),
        ("inpaint", {"has_image": True}, "mask"),
        ("inpaint", {"mask": _IMAGE}, "image"),
        ("inpaint", {"has_image": True, "mask": _IMAGE, "outpaint": _OUT}, "outpaint"),
        ("outpaint", {"has_image": True, "outpaint": _OUT, "height": 64}, "height"),
        ("outpaint", {"has_image": True}, "outpaint"),
        ("outpaint", {"has_image": True, "outpaint": _OUT, "mask": _IMAGE}, "mask"),
        ("t2i", {"has_image": True}, "image"),
        ("t2i", {"strength": 0.5}, "strength"),
        ("t2i", {"restore": False}, "restore"),
        ("similar", {"has_image": True, "restore": True}, "restore"),
        ("edit", {}, "image"),
        ("edit", {"has_image": True, "n": 2}, "n"),
        ("restore", {"has_image": True, "reference": _IMAGE, "mask": _IMAGE, "n": 3}, "n"),
        ("edit", {"has_image": True, "width": 64}, "width"),
        ("edit", {"has_image": True, "control": ControlInput()}, "control"),
        ("controlnet", {"has_image": True, "edit_method": "p2p"}, "edit_method"),
        ("controlnet", {"has_image": True, "source_caption": "a cat"}, "source_caption"),
        ("inpaint", {"has_image": True, "mask": _IMAGE, "reference": _IMAGE}, "reference"),
        ("restore", {"has_image": True, "mask": _IMAGE}, "reference"),
        ("restore", {"has_image": True, "reference": _IMAGE}, "mask"),
        ("restore", {"has_image": True, "reference": _IMAGE, "mask": _IMAGE, "width": 64}, "width"),
        (
            "restore",
            {"has_image": True, "reference": _IMAGE, "mask": _IMAGE, "strength": 1},
            "strength",
        ),
    ],
)
def test_fields_that_do_not_fit_the_task_are_422(
    task: str, fields: dict[str, Any], field: str
) -> None:
    sizes = {"width": fields.pop("width", None), "height": fields.pop("height", None)}
    has_image, n = fields.pop("has_image", False), fields.pop("n", 1)
    with pytest.raises(ApiError) as error:
        check_task_fields(
            task, image_field="image", has_image=has_image, given=fields, n=n, **sizes
        )
    assert error.value.status_code == 422 and error.value.field == field


@pytest.mark.parametrize(
    ("task", "fields"),
    [
        ("t2i", {"width": 64}),
        ("inpaint", {"has_image": True, "mask": _IMAGE, "restore": False, "strength": 0.5}),
        ("edit", {"has_image": True, "edit_method": "diffedit", "target_caption": "a dog"}),
        ("controlnet", {"has_image": True, "control": ControlInput(), "width": 64}),
        ("controlnet", {"has_image": True}),  # control omitted: canny with the defaults
        ("restore", {"has_image": True, "reference": _IMAGE, "mask": _IMAGE}),
        ("similar", {"has_image": True, "height": 64}),
    ],
)
def test_fields_that_fit_the_task_pass(task: str, fields: dict[str, Any]) -> None:
    sizes = {"width": fields.pop("width", None), "height": fields.pop("height", None)}
    has_image = fields.pop("has_image", False)
    check_task_fields(task, image_field="image", has_image=has_image, given=fields, **sizes)


def test_every_task_specific_field_names_only_known_tasks() -> None:
    assert set(FIELD_TASKS) >= {"mask", "reference", "control", "edit_method", "restore"}
    assert {task for tasks in FIELD_TASKS.values() for task in tasks} <= set(TASKS)


def test_the_request_schemas_name_exactly_the_tables_tasks() -> None:
    assert set(get_args(TaskName)) == set(TASKS)


def test_task_inputs_fill_the_request() -> None:
    request = GenerationRequest(task=Task.TASK_OUTPAINT)
    TaskInputs(["img_a"], outpaint=Outpaint(left=8), strength=0.5).apply_to(request)
    assert list(request.input_image_ids) == ["img_a"] and request.outpaint.left == 8
    assert request.HasField("strength") and request.strength == 0.5
    plain = GenerationRequest(task=Task.TASK_INPAINT)
    TaskInputs(["img_a"], mask_image_id="img_m").apply_to(plain)
    assert plain.mask_image_id == "img_m" and not plain.HasField("strength")
    assert not plain.HasField("restore")  # unset: the worker's default (on)
    unrestored = GenerationRequest(task=Task.TASK_INPAINT)
    TaskInputs(["img_a"], mask_image_id="img_m", restore=False).apply_to(unrestored)
    assert unrestored.HasField("restore") and unrestored.restore is False
    edit = GenerationRequest(task=Task.TASK_EDIT, prompt="a parrot on a sofa")
    TaskInputs(
        ["img_a"],
        edit=Edit(
            source_caption="a cat on a sofa", instruction="swap it", method="EDIT_METHOD_DIFFEDIT"
        ),
    ).apply_to(edit)
    assert (
        edit.edit.source_caption == "a cat on a sofa"
        and edit.edit.method == EditMethod.EDIT_METHOD_DIFFEDIT
    )
    control = GenerationRequest(task=Task.TASK_CONTROLNET)
    TaskInputs(["img_c"], control=Control(preprocessed=True)).apply_to(control)
    assert control.HasField("control") and control.control.preprocessed


def test_a_message_with_images_has_image_url_parts_then_the_text() -> None:
    assert ChatMessage("user", "hi").to_openai() == {"role": "user", "content": "hi"}
    message = ChatMessage("user", "fill it", image_urls=("data:image/png;base64,AAAA",))
    assert message.to_openai() == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "fill it"},
        ],
    }
