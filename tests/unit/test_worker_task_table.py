"""The worker's task table: one entry per task it runs, and the lookups built on it."""

from __future__ import annotations

import io
from typing import Any, cast

import pytest
import torch
from PIL import Image

from services.common.blob_store import Blob, RedisBlobStore
from services.common.contract import GenerationRequest, Outpaint, Task
from services.common.image_rules import sized_by_input_image
from services.worker.loading import MISSING_COMPONENT, LoadedModels
from services.worker.profiles import get_profile
from services.worker.task_table import TASKS, TaskContext, models_needed, task_entry


def test_every_image_task_of_the_contract_has_an_entry() -> None:
    # SIMILAR is a t2i job made by the gateway from the mllm's description of an image.
    served = set(Task.values()) - {Task.TASK_UNSPECIFIED, Task.TASK_SIMILAR}
    assert set(TASKS) == served


def test_entries_name_only_known_pipelines() -> None:
    for entry in TASKS.values():
        assert entry.models <= set(MISSING_COMPONENT)


def test_the_worker_loads_what_its_tasks_need() -> None:
    assert models_needed(TASKS) == {"inpainting", "controlnet", "editing"}
    assert models_needed([Task.TASK_T2I, Task.TASK_RESTORE]) == frozenset()
    assert models_needed([Task.TASK_OUTPAINT]) == {"inpainting"}


@pytest.mark.parametrize("task", [Task.TASK_SIMILAR, Task.TASK_UNSPECIFIED])
def test_a_task_without_an_entry_is_not_implemented(task: int) -> None:
    with pytest.raises(NotImplementedError, match="is not implemented"):
        task_entry(task)


class WhiteImages:
    """A blob store holding a white 64x64 PNG under every id (a mask selecting all)."""

    def get(self, tenant: str, blob_id: str) -> Blob:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), "white").save(buffer, format="PNG")
        return Blob(buffer.getvalue(), "image/png")


def sized_request(task: int) -> GenerationRequest:
    """A valid request of `task` (its images from `WhiteImages`) that also asks for a width."""
    request = GenerationRequest(task=task, prompt="a pear", width=64)  # type: ignore[arg-type]
    request.input_image_ids.append("img_a")
    if task == Task.TASK_RESTORE:
        request.prompt = ""
        request.input_image_ids.append("img_b")
    if task in (Task.TASK_INPAINT, Task.TASK_RESTORE):
        request.mask_image_id = "img_mask"
    if task == Task.TASK_OUTPAINT:
        request.outpaint.CopyFrom(Outpaint(left=8))
    if task == Task.TASK_EDIT:
        request.edit.source_caption = "an apple"
    return request


@pytest.mark.parametrize("task", sorted(TASKS))
def test_tasks_sized_by_their_input_image_refuse_a_width(task: int) -> None:
    # The worker's resolvers apply the rule the gateway checks (image_rules.py).
    models = LoadedModels(
        profile=get_profile("tiny"),
        text_to_image=cast(Any, None),  # resolvers read only the profile
        revision="tiny",
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    blobs = cast(RedisBlobStore, WhiteImages())
    context = TaskContext(sized_request(task), models, blobs)
    if sized_by_input_image(task):
        with pytest.raises(ValueError, match="must be unset"):
            task_entry(task).resolve(context)
    else:
        assert task_entry(task).resolve(context).width == 64
