"""t2i: text to image. No input image; the mllm writes the prompt (chat) or refines the
caller's on request (POST /v1/images, `refine`)."""

from __future__ import annotations

from services.common.contract import Task
from services.gateway.tasks.base import ImageTask, MllmRole

TASK = ImageTask(name="t2i", contract_task=Task.TASK_T2I, mllm=MllmRole.WRITES_PROMPT)
