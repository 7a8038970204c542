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

from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_inpaint import (
    StableDiffusionXLInpaintPipeline,
)
from PIL import Image, UnidentifiedImageError

from services.common.blob_store import RedisBlobStore
from services.common.contract import GenerationRequest, Task, task_name
from services.worker.loading import LoadedModels
from services.worker.pipelines.common import GenerationParams, GenerationResult, ProgressCallback
from services.worker.pipelines.controlnet import resolve_controlnet_params, run_controlnet
from services.worker.pipelines.editing import resolve_edit_params, run_edit
from services.worker.pipelines.inpainting import params_for_mask_image, run_inpainting
from services.worker.pipelines.outpainting import resolve_outpaint_params
from services.worker.pipelines.restoring import resolve_restore_params, run_restore
from services.worker.pipelines.text_to_image import resolve_params, run_text_to_image
from services.worker.restore import COLOR_RESTORER, choose_restorer


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
    """Check `request` and bind it to the pipeline of its task. `restore_colors`: the
    colour fallback restores inpaint/outpaint results when no DiffRIR is loaded."""
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
        requested = request.restore if request.HasField("restore") else None
        restorer = choose_restorer(requested, models.restorer, restore_colors)
        return PreparedJob(params, partial(run_inpainting, pipeline, params, restorer=restorer))

    if request.task == Task.TASK_RESTORE:
        # input_image_ids: [generated, reference]; the mask marks the generated region.
        if len(request.input_image_ids) != 2 or not request.mask_image_id:
            raise ValueError(
                "restore needs two input images (the generated image, then the reference) "
                "and a mask image (white = generated region)"
            )
        generated_id, reference_id = request.input_image_ids
        params = resolve_restore_params(
            request,
            models.profile,
            fetch_image(blobs, request.tenant, generated_id, "generated image"),
            fetch_image(blobs, request.tenant, reference_id, "reference image"),
            fetch_image(blobs, request.tenant, request.mask_image_id, "mask image"),
        )
        # A restore job always restores: with DiffRIR when loaded, else with colours.
        restorer = models.restorer or COLOR_RESTORER
        return PreparedJob(params, partial(run_restore, restorer, params))

    if request.task == Task.TASK_EDIT:
        editor = editing_pipeline(models)
        edit_image = None
        if request.input_image_ids:
            image_id = request.input_image_ids[0]
            edit_image = fetch_image(blobs, request.tenant, image_id, "input image")
        edit_params = resolve_edit_params(request, models.profile, edit_image)
        return PreparedJob(edit_params, partial(run_edit, editor, edit_params))

    if request.task == Task.TASK_CONTROLNET:
        if models.controlnet is None:
            raise NotImplementedError(
                f"task controlnet is not available: profile {models.profile.name} "
                "has no ControlNet loaded"
            )
        if not request.input_image_ids:
            raise ValueError("controlnet needs a control image (a photo or an edge map)")
        source = fetch_image(blobs, request.tenant, request.input_image_ids[0], "control image")
        params = resolve_controlnet_params(request, models.profile, source)
        return PreparedJob(params, partial(run_controlnet, models.controlnet, params))

    raise NotImplementedError(f"task {task_name(request.task)} is not implemented")


def editing_pipeline(models: LoadedModels) -> StableDiffusionPipeline:
    """The loaded editing pipeline (SD 1.5 components); NotImplementedError when this
    worker has none."""
    if models.editing is None:
        raise NotImplementedError(
            f"task edit is not available: profile {models.profile.name} has no SD 1.5 "
            "editing pipeline"
        )
    return models.editing


def inpainting_pipeline(
    models: LoadedModels, task: int
) -> StableDiffusionInpaintPipeline | StableDiffusionXLInpaintPipeline:
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
