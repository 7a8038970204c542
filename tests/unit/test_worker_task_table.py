"""The worker's task table: one entry per task it runs, and the lookups built on it."""

from __future__ import annotations

import pytest

from services.common.contract import Task
from services.worker.loading import MISSING_COMPONENT
from services.worker.task_table import TASKS, models_needed, task_entry


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
