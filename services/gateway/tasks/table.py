"""The image tasks of the API, by name: the one table `POST /v1/images` and `POST /v1/chat`
look a task up in. Adding a task: a module beside this one that declares its `TASK`, and
one line here (docs/api.md, "Adding a task").
"""

from __future__ import annotations

from collections.abc import Mapping

from services.gateway.http.errors import invalid
from services.gateway.tasks import controlnet, edit, inpaint, outpaint, restore, similar, t2i
from services.gateway.tasks.base import ImageTask

TASKS: dict[str, ImageTask] = {
    module.TASK.name: module.TASK
    for module in (t2i, similar, inpaint, outpaint, edit, restore, controlnet)
}
# protocol.TaskName lists the same names for the request schemas (a test keeps them equal).

# Every task-specific request field, and the tasks that take it.
FIELD_TASKS: dict[str, tuple[str, ...]] = {
    name: tuple(task.name for task in TASKS.values() if name in task.fields)
    for name in sorted({name for task in TASKS.values() for name in task.fields})
}


def _quoted(tasks: tuple[str, ...]) -> str:
    """("a", "b") -> "'a' or 'b'"."""
    return " or ".join(repr(task) for task in tasks)


def check_task_fields(
    task_name: str,
    *,
    image_field: str,
    has_image: bool,
    given: Mapping[str, object],
    width: int | None,
    height: int | None,
    n: int = 1,
) -> ImageTask:
    """The task named `task_name`, once its fields fit it; else 422 naming the field.
    `given` maps task-specific field names (FIELD_TASKS) to their values (None: omitted):
    each belongs to its tasks only, and a task needs its required ones. A task with no
    `prepare` takes no image, every other one needs one; a task sized by its image takes
    no width/height; a single-image task takes n = 1 only."""
    task = TASKS[task_name]
    for name, value in given.items():
        if value is not None and name not in task.fields:
            raise invalid(
                f"{name} is only for task {_quoted(FIELD_TASKS[name])}, not {task_name!r}", name
            )
    if task.prepare is None:
        if has_image:
            raise invalid(f"task {task_name!r} takes no input image", image_field)
        return task
    if task.sized_by_image:
        for name, value in (("width", width), ("height", height)):
            if value is not None:
                raise invalid(
                    f"{name} must be omitted for {task_name}: the output takes the input "
                    "image's size",
                    name,
                )
    if task.single_image and n != 1:
        raise invalid(f"n must be 1 for {task_name}: {task.single_image}", "n")
    if not has_image:
        raise invalid(f"{task_name} needs an input image", image_field)
    for name, message in task.required:
        if given.get(name) is None:
            raise invalid(message, name)
    return task
