"""Inputs of ControlNet jobs: the control image and how the worker reads it.

A ControlNet job is a text-to-image job steered by a control image: a photo whose Canny
edges the worker computes, or (`preprocessed`) the edge map itself. The image goes to the
worker by id as `input_image_ids[0]`, the options as the contract's `Control`. The output
size defaults to the control image's, snapped as for similar images (similar.py), so the
edges line up with the output without being stretched.

Served by `POST /v1/images` (`task: "controlnet"`) and `POST /v1/chat`, where the mllm sees
the control image and writes the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.common.contract import Control, ControlType, Task
from services.common.image_rules import (
    DEFAULT_HIGH_THRESHOLD,
    DEFAULT_LOW_THRESHOLD,
    CannyThresholds,
)
from services.gateway.http.errors import invalid
from services.gateway.protocol import ControlInput, ImageInput
from services.gateway.tasks.base import ImageTask, MllmRole, TaskArgs
from services.gateway.tasks.inputs import TaskInputs, stored_id
from services.gateway.tasks.similar import SourceImageInputs, sized_source_image

if TYPE_CHECKING:
    from services.gateway.state import GatewayState


def control_message(spec: ControlInput | None) -> Control:
    """The contract's Control for checked options (None: canny computed by the worker,
    every default the worker's); 422 naming the field for thresholds that do not fit:
    given for a preprocessed image, or low not below high (an omitted one counts as its
    default)."""
    spec = spec or ControlInput()
    low, high = spec.low_threshold, spec.high_threshold
    if low is not None or high is not None:
        name = "low_threshold" if low is not None else "high_threshold"
        if spec.preprocessed:
            raise invalid(
                f"control.{name}: Canny thresholds are for edges the worker computes, not "
                "for a preprocessed control image",
                f"control.{name}",
            )
        # The worker's rule (image_rules.py); the schema already bounds each to 1..255.
        resolved = CannyThresholds.with_defaults(low or 0, high or 0)
        if not resolved.valid:
            raise invalid(
                f"control.{name}: low_threshold {resolved.low} must be below high_threshold "
                f"{resolved.high} (omitted: low {DEFAULT_LOW_THRESHOLD}, high "
                f"{DEFAULT_HIGH_THRESHOLD})",
                f"control.{name}",
            )
    control = Control(
        type=ControlType.CONTROL_TYPE_CANNY,
        preprocessed=spec.preprocessed,
        low_threshold=low or 0,  # 0: the worker's default
        high_threshold=high or 0,
    )
    if spec.conditioning_scale is not None:
        control.conditioning_scale = spec.conditioning_scale
    return control


@dataclass(frozen=True)
class ControlInputs(SourceImageInputs):
    """A checked control image, its options and the output size to use."""

    control: Control = field(default_factory=Control)

    async def store(self, state: GatewayState, tenant: str) -> TaskInputs:
        """Store an inline control image (once); the job gets it by id and the options."""
        return TaskInputs(
            input_image_ids=[await stored_id(state, tenant, self.image)], control=self.control
        )


async def prepare(
    state: GatewayState, tenant: str, image: ImageInput, field_name: str, args: TaskArgs
) -> ControlInputs:
    """Check the control options (422 naming the field) and the image (4xx naming
    `field_name`); fix the output size: `width`/`height` where given, else the image's
    (see `similar_size`). Nothing stored."""
    options = args.options
    control = control_message(options.control)
    checked, width, height = await sized_source_image(
        state, tenant, image, field_name, options.width, options.height
    )
    return ControlInputs(image=checked, width=width, height=height, control=control)


TASK = ImageTask(
    name="controlnet",
    contract_task=Task.TASK_CONTROLNET,
    mllm=MllmRole.WRITES_PROMPT,
    prepare=prepare,
    fields=frozenset({"control"}),
    works_on_latest_image=True,
)
