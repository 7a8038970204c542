"""From a `GenerationRequest` to a job ready to run: the task's input images fetched from the
blob store, its parameters checked, and the pipeline that runs it chosen.

`prepare_job` raises ValueError (bad input, a missing image) or NotImplementedError (a task
this worker does not run) before anything runs, so the job fails with that message.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from PIL import Image, UnidentifiedImageError

from services.common.blob_store import RedisBlobStore
from services.common.contract import GenerationRequest, Task, task_name
from services.worker.loading import LoadedModels
from services.worker.pipelines.common import GenerationParams, GenerationResult, ProgressCallback
from services.worker.pipelines.inpainting import params_for_mask_image, run_inpainting
from services.worker.pipelines.outpainting import resolve_outpaint_params
from services.worker.pipelines.text_to_image import resolve_params, run_text_to_image


@dataclass(frozen=True)
class PreparedJob:
    """A checked job: what it will run (recorded when it starts) and how to run it."""

    params: GenerationParams
    run: Callable[[ProgressCallback | None], GenerationResult]


def prepare_job(
    request: GenerationRequest,
    models: LoadedModels,
    blobs: RedisBlobStore,
    restore_colors: bool = True,
) -> PreparedJob:
    """Check `request` and bind it to the pipeline of its task."""
    if request.task == Task.TASK_T2I:
        params = resolve_params(request, models.profile)
        return PreparedJob(params, partial(run_text_to_image, models.text_to_image, params))

    if request.task in (Task.TASK_INPAINT, Task.TASK_OUTPAINT):
        pipeline = inpainting_pipeline(models, request.task)
        if not request.input_image_ids:
            raise ValueError(f"{task_name(request.task)} needs an input image")
        image = fetch_image(blobs, request.tenant, request.input_image_ids[0], "input image")
        if request.task == Task.TASK_INPAINT:
            if not request.mask_image_id:
                raise ValueError("inpaint needs a mask image")
            mask = fetch_image(blobs, request.tenant, request.mask_image_id, "mask image")
            params = params_for_mask_image(request, models.profile, image, mask)
        else:
            params = resolve_outpaint_params(request, models.profile, image)
        return PreparedJob(
            params, partial(run_inpainting, pipeline, params, restore_colors=restore_colors)
        )

    raise NotImplementedError(f"task {task_name(request.task)} is not implemented")


def inpainting_pipeline(models: LoadedModels, task: int) -> StableDiffusionInpaintPipeline:
    """The loaded inpainting pipeline; NotImplementedError when this worker has none."""
    if models.inpainting is None:
        raise NotImplementedError(
            f"task {task_name(task)} is not available: profile {models.profile.name} "
            "has no inpainting model loaded"
        )
    return models.inpainting


def fetch_image(blobs: RedisBlobStore, tenant: str, blob_id: str, what: str) -> Image.Image:
    """The image stored under `blob_id`, decoded; ValueError naming `what` when the blob is
    missing (expired or never uploaded) or is not an image."""
    blob = blobs.get(tenant, blob_id)
    if blob is None:
        raise ValueError(f"{what} {blob_id} not found (expired or never uploaded)")
    try:
        image = Image.open(io.BytesIO(blob.data))
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{what} {blob_id} is not a readable image: {error}") from None
    return image
