"""The gateway's checks and views of edit, ControlNet and restore jobs: control options
validated with the field named, the edit dialogue the mllm gets for the target caption,
which inputs make a chat turn an edit or a ControlNet turn, which tasks need or refuse a
prompt, and the job view of the new record fields."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.common import image_rules
from services.common.contract import (
    Control,
    ControlType,
    Edit,
    EditMethod,
    GenerationRequest,
    JobRecord,
    JobStatus,
    Task,
)
from services.gateway.chat.protocol import ChatRequest
from services.gateway.chat.serving import turn_task
from services.gateway.http.errors import ApiError
from services.gateway.images.protocol import ImagesRequest
from services.gateway.images.serving import check_prompt
from services.gateway.jobs.serving import job_view
from services.gateway.mllm.generation_tags import parse_reply
from services.gateway.protocol import MAX_CANNY_THRESHOLD, MAX_CONDITIONING_SCALE, ControlInput
from services.gateway.tasks.controlnet import control_message
from services.gateway.tasks.edit import DESCRIBE_MESSAGE, edit_method, target_caption_messages

# --------------------------------------------------------------------------- controlnet


def test_control_defaults_are_canny_computed_by_the_worker() -> None:
    for spec in (None, ControlInput()):
        control = control_message(spec)
        assert control.type == ControlType.CONTROL_TYPE_CANNY and not control.preprocessed
        assert (control.low_threshold, control.high_threshold) == (0, 0)  # worker defaults
        assert not control.HasField("conditioning_scale")


def test_control_threshold_defaults_are_the_workers() -> None:
    one = control_message(ControlInput(low_threshold=50))  # high: the default, 200
    assert (one.low_threshold, one.high_threshold) == (50, 0)
    assert image_rules.resolve_canny_thresholds(one.low_threshold, one.high_threshold) == (
        image_rules.CannyThresholds(50, image_rules.DEFAULT_HIGH_THRESHOLD)
    )


def test_control_limits_are_the_workers() -> None:
    # The schema must refuse (422) every scale and threshold the worker would fail the job on.
    assert MAX_CONDITIONING_SCALE == image_rules.MAX_CONDITIONING_SCALE
    assert MAX_CANNY_THRESHOLD == image_rules.MAX_CANNY_THRESHOLD


def test_control_options_reach_the_contract() -> None:
    control = control_message(
        ControlInput(conditioning_scale=0.5, low_threshold=50, high_threshold=150)
    )
    assert control.conditioning_scale == 0.5
    assert (control.low_threshold, control.high_threshold) == (50, 150)
    preprocessed = control_message(ControlInput(preprocessed=True, conditioning_scale=0))
    assert preprocessed.preprocessed and preprocessed.HasField("conditioning_scale")


@pytest.mark.parametrize(
    ("options", "field", "needle"),
    [
        ({"low_threshold": 200}, "control.low_threshold", "below high_threshold 200"),
        ({"high_threshold": 100}, "control.high_threshold", "low_threshold 100 must be"),
        ({"low_threshold": 150, "high_threshold": 150}, "control.low_threshold", "below"),
        ({"preprocessed": True, "high_threshold": 2}, "control.high_threshold", "preprocessed"),
    ],
)
def test_control_thresholds_that_do_not_fit_are_422(
    options: dict[str, Any], field: str, needle: str
) -> None:
    with pytest.raises(ApiError) as error:
        control_message(ControlInput(**options))
    assert error.value.status_code == 422 and error.value.field == field
    assert needle in error.value.message


@pytest.mark.parametrize(
    "options",
    [
        {"type": "depth"},
        {"conditioning_scale": 2.5},
        {"conditioning_scale": -0.1},
        {"low_threshold": 0, "high_threshold": 10},
        {"low_threshold": 10, "high_threshold": 256},
        {"colour": "red"},
    ],
)
def test_control_schema_limits(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ControlInput.model_validate(options)


# --------------------------------------------------------------------------- edit


def test_edit_methods_by_name() -> None:
    assert edit_method("p2p") == EditMethod.EDIT_METHOD_P2P
    assert edit_method("diffedit") == EditMethod.EDIT_METHOD_DIFFEDIT
    assert edit_method(None) == EditMethod.EDIT_METHOD_UNSPECIFIED


def test_the_target_caption_is_asked_right_after_the_source_caption() -> None:
    url = "data:image/png;base64,AAAA"
    describe, answer, instruction = target_caption_messages(
        url, "a cat on a red sofa", "swap the cat for a parrot"
    )
    assert describe.role == "user" and describe.content == DESCRIBE_MESSAGE
    assert describe.image_urls == (url,)  # the image goes with the first user turn only
    assert answer.role == "assistant" and parse_reply(answer.content).prompts == [
        "a cat on a red sofa"
    ]
    assert instruction.role == "user" and instruction.content == "swap the cat for a parrot"
    assert instruction.image_urls == ()


def _request(**fields: Any) -> ImagesRequest:
    return ImagesRequest.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        ({"task": "edit"}, "prompt", "the instruction"),
        ({"task": "edit", "source_caption": "a cat"}, "prompt", "the instruction"),
        ({"task": "controlnet"}, "prompt", "is required"),
        ({"task": "restore", "prompt": "fix it"}, "prompt", "takes no prompt"),
        ({"task": "restore", "steps": 4}, "steps", "takes no steps"),
        ({"task": "restore", "guidance_scale": 0}, "guidance_scale", "takes no guidance"),
        ({"task": "restore", "negative_prompt": "blur"}, "negative_prompt", "takes no"),
        ({"task": "edit", "prompt": "swap", "refine": True}, "refine", "does not apply"),
        ({"task": "restore", "refine": True}, "refine", "does not apply"),
        ({"task": "edit", "prompt": "swap", "source_caption": "x" * 41}, "source_caption", "40"),
        ({"task": "edit", "target_caption": "y" * 41}, "target_caption", "40"),
    ],
)
def test_prompt_rules_per_task(fields: dict[str, Any], field: str, needle: str) -> None:
    with pytest.raises(ApiError) as error:
        check_prompt(_request(**fields), max_chars=40)
    assert error.value.status_code == 422 and error.value.field == field
    assert needle in error.value.message


@pytest.mark.parametrize(
    "fields",
    [
        {"task": "edit", "target_caption": "a parrot on a red sofa"},  # no instruction needed
        {"task": "edit", "prompt": "swap the cat for a parrot"},
        {"task": "restore"},
        {"task": "similar"},
        {"task": "controlnet", "prompt": "a house", "refine": True},
    ],
)
def test_prompt_rules_accept(fields: dict[str, Any]) -> None:
    check_prompt(_request(**fields), max_chars=40)


@pytest.mark.parametrize("name", ["source_caption", "target_caption"])
def test_blank_captions_are_invalid(name: str) -> None:
    with pytest.raises(ValidationError):
        _request(task="edit", prompt="swap", **{name: "  "})


# --------------------------------------------------------------------------- chat tasks


@pytest.mark.parametrize(
    ("fields", "task"),
    [
        ({"edit_method": "p2p"}, "edit"),
        ({"control": {"preprocessed": True}}, "controlnet"),
        ({"images": [{"id": "img_a"}]}, "similar"),  # an instruction alone is no edit
        ({"images": [{"id": "img_a"}], "task": "edit"}, "edit"),
        ({"task": "controlnet"}, "controlnet"),
        ({}, "t2i"),
    ],
)
def test_chat_turn_task_follows_from_the_inputs(fields: dict[str, Any], task: str) -> None:
    request = ChatRequest.model_validate({"message": "now make it night", **fields})
    assert turn_task(request) == task


# --------------------------------------------------------------------------- job view


def _edit_record(method: str = "EDIT_METHOD_UNSPECIFIED") -> JobRecord:
    request = GenerationRequest(
        job_id="job_e",
        task=Task.TASK_EDIT,
        prompt="a parrot on a red sofa",
        input_image_ids=["img_a"],
        edit=Edit(source_caption="a cat on a red sofa", instruction="swap it", method=method),
    )
    return JobRecord(request=request, status=JobStatus.JOB_STATUS_QUEUED)


def test_edit_job_view_shows_both_captions_before_and_after_the_worker_ran() -> None:
    queued = job_view(_edit_record("EDIT_METHOD_DIFFEDIT"))
    assert queued.source_caption == "a cat on a red sofa"
    assert queued.target_caption == queued.prompt == "a parrot on a red sofa"
    assert queued.instruction == "swap it" and queued.edit_method == "diffedit"

    record = _edit_record()
    assert job_view(record).edit_method is None  # the worker's default, not run yet
    record.source_prompt_used = "a cat on a red sofa, photo"
    record.prompt_used = "a parrot on a red sofa, photo"
    record.edit_method_used = "p2p"
    ran = job_view(record)
    assert ran.source_caption == "a cat on a red sofa, photo"
    assert ran.target_caption == "a parrot on a red sofa, photo" and ran.edit_method == "p2p"


def test_other_jobs_show_no_edit_fields_and_their_control_and_restore() -> None:
    request = GenerationRequest(job_id="job_c", task=Task.TASK_CONTROLNET, prompt="a house")
    request.control.CopyFrom(Control(low_threshold=50, high_threshold=150))
    request.control.conditioning_scale = 0.7
    view = job_view(JobRecord(request=request, status=JobStatus.JOB_STATUS_QUEUED))
    assert view.task == "controlnet" and view.source_caption is None and view.edit_method is None
    assert view.control is not None and view.control.conditioning_scale == 0.7
    assert (view.control.low_threshold, view.control.high_threshold) == (50, 150)

    inpaint = GenerationRequest(job_id="job_i", task=Task.TASK_INPAINT, restore=False)
    record = JobRecord(request=inpaint, status=JobStatus.JOB_STATUS_SUCCEEDED)
    shown = job_view(record)
    assert shown.restore is False and shown.restore_used is None and shown.control is None
    record.request.ClearField("restore")
    record.restore_used = "color"
    assert job_view(record).restore is None and job_view(record).restore_used == "color"
