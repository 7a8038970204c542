"""The worker's task table: every contract task it runs, and everything about it, in one
entry (`TASKS`).

An entry says, for one `Task`:

- `models`: the pipelines it needs besides text-to-image (loading.py `Component`). The
  worker loads what its tasks need (`models_needed`), and a job whose pipeline the profile
  does not have is refused before anything runs (job_preparation.py);
- `resolve`: its parameter resolver: fetch the job's input images from the blob store and
  check the request against the profile (ValueError with a message for the job record);
- `run`: its pipeline runner, on the loaded models, reporting progress;
- `revision`: the `model_revision` its jobs record: the weights that shape its images;
- `batch`: whether and how its jobs denoise together with other jobs (`BatchRule`,
  services/worker/batching.py); None: each job runs alone.

`prepare_job` (job_preparation.py) looks the task up; nothing else in the worker branches
on it. Adding a task: docs/worker.md, "Adding a task".
"""

from __future__ import annotations

import io
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PIL import Image, UnidentifiedImageError

from services.common.blob_store import BlobStore
from services.common.contract import GenerationRequest, Task, task_name
from services.common.image_rules import snap_up
from services.worker.loading import Component, LoadedModels
from services.worker.pipelines.batching import BatchMember
from services.worker.pipelines.common import GenerationResult, ProgressCallback, ResolvedParams
from services.worker.pipelines.controlnet import (
    ControlNetParams,
    resolve_controlnet_params,
    run_controlnet,
)
from services.worker.pipelines.editing import EditParams, resolve_edit_params, run_edit
from services.worker.pipelines.inpainting import (
    InpaintParams,
    params_for_mask_image,
    run_inpainting,
    run_inpainting_batch,
)
from services.worker.pipelines.outpainting import resolve_outpaint_params
from services.worker.pipelines.restoring import (
    RestoreParams,
    resolve_restore_params,
    run_restore,
)
from services.worker.pipelines.text_to_image import (
    resolve_params,
    run_text_to_image,
    run_text_to_image_batch,
)
from services.worker.restorers import COLOR_RESTORER, Restorer, choose_restorer

P = TypeVar("P", bound=ResolvedParams)
INPAINT_UNET_CHANNELS = 9  # noisy latent 4 + mask 1 + masked image latent 4


@dataclass(frozen=True)
class TaskContext:
    """What a task's resolver and runner read: the request, the loaded models, the blob
    store its input images are in, and whether the colour fallback restores inpaint and
    outpaint results when no DiffRIR is loaded (LLMGA_WORKER_COLOR_RESTORE)."""

    request: GenerationRequest
    models: LoadedModels
    blobs: BlobStore
    restore_colors: bool = True

    def image(self, blob_id: str, what: str) -> Image.Image:
        """The request's image `blob_id`, decoded; ValueError naming `what` (fetch_image)."""
        return fetch_image(self.blobs, self.request.tenant, blob_id, what)

    def first_input_image(self, what: str, missing: str) -> Image.Image:
        """`input_image_ids[0]`, decoded; ValueError(`missing`) when there is none."""
        if not self.request.input_image_ids:
            raise ValueError(missing)
        return self.image(self.request.input_image_ids[0], what)


# One job of a batch: its context, its resolved parameters and its progress callback.
BatchJob = tuple[TaskContext, P, ProgressCallback | None]
# Each job's result, or the exception that stopped or failed it alone, in order.
BatchOutcomes = list[GenerationResult | BaseException]


@dataclass(frozen=True)
class BatchRule(Generic[P]):
    """How a task's jobs denoise together. `key`: jobs with equal keys may share one
    batch: it holds everything the pipeline call takes once for all rows (network, size,
    steps, strength, guidance scale, ...); None for a job that must run alone. `run`: the
    jobs of one key, denoised together (docs/batching.md)."""

    key: Callable[[TaskContext, P], Hashable | None]
    run: Callable[[Sequence[BatchJob[P]]], BatchOutcomes]


@dataclass(frozen=True)
class TaskEntry(Generic[P]):
    """One task of the table (module docstring)."""

    models: frozenset[Component]
    resolve: Callable[[TaskContext], P]
    run: Callable[[TaskContext, P, ProgressCallback | None], GenerationResult]
    revision: Callable[[LoadedModels, GenerationRequest], str]
    batch: BatchRule[P] | None = None


def fetch_image(blobs: BlobStore, tenant: str, blob_id: str, what: str) -> Image.Image:
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


# -- text-to-image ---------------------------------------------------------------------------


def _resolve_t2i(context: TaskContext) -> ResolvedParams:
    return resolve_params(context.request, context.models.profile)


def _run_t2i(
    context: TaskContext, params: ResolvedParams, on_progress: ProgressCallback | None
) -> GenerationResult:
    models = context.models
    return run_text_to_image(
        models.text_to_image, params, on_progress, text_conditioner=models.text_conditioner
    )


def _t2i_batch_key(_context: TaskContext, params: ResolvedParams) -> Hashable:
    # What the pipeline call takes once for every row (the profile, hence the network
    # and scheduler, is the worker's own).
    return ("text_to_image", params.width, params.height, params.steps, params.guidance_scale)


def _run_t2i_batch(jobs: Sequence[BatchJob[ResolvedParams]]) -> BatchOutcomes:
    models = jobs[0][0].models
    members = [BatchMember(params, cb) for _, params, cb in jobs]
    return run_text_to_image_batch(
        models.text_to_image, members, text_conditioner=models.text_conditioner
    )


def _base_revision(models: LoadedModels, _request: GenerationRequest) -> str:
    return models.revision


# -- inpaint and outpaint (the inpainting pipeline, then a restorer) ---------------------------


def _resolve_inpaint(context: TaskContext) -> InpaintParams:
    image = context.first_input_image("input image", "inpaint needs an input image")
    if not context.request.mask_image_id:
        raise ValueError("inpaint needs a mask image")
    mask = context.image(context.request.mask_image_id, "mask image")
    return params_for_mask_image(context.request, context.models.profile, image, mask)


def _resolve_outpaint(context: TaskContext) -> InpaintParams:
    image = context.first_input_image("input image", "outpaint needs an input image")
    return resolve_outpaint_params(context.request, context.models.profile, image)


def _requested_restore(request: GenerationRequest) -> bool | None:
    """The request's `restore` flag; None when unset (the worker's default: on)."""
    return request.restore if request.HasField("restore") else None


def _run_inpainting(
    context: TaskContext, params: InpaintParams, on_progress: ProgressCallback | None
) -> GenerationResult:
    assert context.models.inpainting is not None  # prepare_job refuses the job otherwise
    return run_inpainting(
        context.models.inpainting, params, on_progress, restorer=_restorer_of(context)
    )


def _restorer_of(context: TaskContext) -> Restorer | None:
    models = context.models
    return choose_restorer(
        _requested_restore(context.request), models.restorer, context.restore_colors
    )


def _inpaint_batch_key(context: TaskContext, params: InpaintParams) -> Hashable | None:
    # Inpaint and outpaint share the network. Only a 9-channel inpainting UNet takes its
    # image and mask as tensors a stopped job's rows can leave; a 4-channel one runs alone.
    assert context.models.inpainting is not None  # prepare_job refuses the job otherwise
    if context.models.inpainting.unet.config.in_channels != INPAINT_UNET_CHANNELS:
        return None
    canvas = (snap_up(params.width), snap_up(params.height))
    return ("inpainting", *canvas, params.steps, params.strength, params.guidance_scale)


def _run_inpainting_batch(jobs: Sequence[BatchJob[InpaintParams]]) -> BatchOutcomes:
    pipeline = jobs[0][0].models.inpainting
    assert pipeline is not None  # prepare_job refuses the job otherwise
    members = [BatchMember(params, on_progress) for _, params, on_progress in jobs]
    return run_inpainting_batch(pipeline, members, [_restorer_of(c) for c, _, _ in jobs])


def _inpainting_revision(models: LoadedModels, request: GenerationRequest) -> str:
    # Restored by DiffRIR, both weights shape the image: the inpainting model's, then its.
    if _requested_restore(request) is not False and models.restorer is not None:
        return f"{models.inpainting_revision}+{models.restorer.revision}"
    return models.inpainting_revision


# -- restore (a restorer alone, no diffusion) --------------------------------------------------


def _resolve_restore(context: TaskContext) -> RestoreParams:
    request = context.request
    # input_image_ids: [generated, reference]; the mask marks the generated region.
    if len(request.input_image_ids) != 2 or not request.mask_image_id:
        raise ValueError(
            "restore needs two input images (the generated image, then the reference) "
            "and a mask image (white = generated region)"
        )
    generated_id, reference_id = request.input_image_ids
    return resolve_restore_params(
        request,
        context.models.profile,
        context.image(generated_id, "generated image"),
        context.image(reference_id, "reference image"),
        context.image(request.mask_image_id, "mask image"),
    )


def _restore_restorer(models: LoadedModels) -> Restorer:
    """A restore job always restores: with DiffRIR when loaded, else with colours."""
    return models.restorer or COLOR_RESTORER


def _run_restore(
    context: TaskContext, params: RestoreParams, on_progress: ProgressCallback | None
) -> GenerationResult:
    return run_restore(_restore_restorer(context.models), params, on_progress)


def _restore_revision(models: LoadedModels, _request: GenerationRequest) -> str:
    return models.restorer.revision if models.restorer is not None else "color"


# -- edit --------------------------------------------------------------------------------------


def _resolve_edit(context: TaskContext) -> EditParams:
    request = context.request
    image = None  # resolve_edit_params says an edit needs one
    if request.input_image_ids:
        image = context.image(request.input_image_ids[0], "input image")
    return resolve_edit_params(request, context.models.profile, image)


def _run_edit(
    context: TaskContext, params: EditParams, on_progress: ProgressCallback | None
) -> GenerationResult:
    assert context.models.editing is not None  # prepare_job refuses the job otherwise
    return run_edit(context.models.editing, params, on_progress)


def _edit_revision(models: LoadedModels, _request: GenerationRequest) -> str:
    return models.editing_revision or models.revision


# -- ControlNet --------------------------------------------------------------------------------


def _resolve_controlnet(context: TaskContext) -> ControlNetParams:
    source = context.first_input_image(
        "control image", "controlnet needs a control image (a photo or an edge map)"
    )
    return resolve_controlnet_params(context.request, context.models.profile, source)


def _run_controlnet(
    context: TaskContext, params: ControlNetParams, on_progress: ProgressCallback | None
) -> GenerationResult:
    assert context.models.controlnet is not None  # prepare_job refuses the job otherwise
    return run_controlnet(context.models.controlnet, params, on_progress)


def _controlnet_revision(models: LoadedModels, _request: GenerationRequest) -> str:
    # Both weights shape the image: the base model's, then the ControlNet's.
    return f"{models.revision}+{models.controlnet_revision}"


# -- the table ---------------------------------------------------------------------------------

# Inpaint and outpaint jobs of equal keys share a batch: the same network and call.
INPAINTING_BATCH = BatchRule(key=_inpaint_batch_key, run=_run_inpainting_batch)

TASKS: dict[int, TaskEntry[Any]] = {
    Task.TASK_T2I: TaskEntry(
        models=frozenset(),
        resolve=_resolve_t2i,
        run=_run_t2i,
        revision=_base_revision,
        batch=BatchRule(key=_t2i_batch_key, run=_run_t2i_batch),
    ),
    Task.TASK_INPAINT: TaskEntry(
        models=frozenset({"inpainting"}),
        resolve=_resolve_inpaint,
        run=_run_inpainting,
        revision=_inpainting_revision,
        batch=INPAINTING_BATCH,
    ),
    Task.TASK_OUTPAINT: TaskEntry(
        models=frozenset({"inpainting"}),
        resolve=_resolve_outpaint,
        run=_run_inpainting,
        revision=_inpainting_revision,
        batch=INPAINTING_BATCH,
    ),
    Task.TASK_RESTORE: TaskEntry(
        models=frozenset(), resolve=_resolve_restore, run=_run_restore, revision=_restore_revision
    ),
    Task.TASK_EDIT: TaskEntry(
        models=frozenset({"editing"}), resolve=_resolve_edit, run=_run_edit, revision=_edit_revision
    ),
    Task.TASK_CONTROLNET: TaskEntry(
        models=frozenset({"controlnet"}),
        resolve=_resolve_controlnet,
        run=_run_controlnet,
        revision=_controlnet_revision,
    ),
}


def task_entry(task: int) -> TaskEntry[Any]:
    """The table's entry of `task`; NotImplementedError for a task this worker does not run."""
    try:
        return TASKS[task]
    except KeyError:
        raise NotImplementedError(f"task {task_name(task)} is not implemented") from None


def models_needed(tasks: Iterable[int]) -> frozenset[Component]:
    """The pipelines (besides text-to-image) that jobs of `tasks` need."""
    return frozenset(component for task in tasks for component in task_entry(task).models)


def model_revision(models: LoadedModels, request: GenerationRequest) -> str:
    """The `model_revision` a job of `request` records on `models`."""
    return task_entry(request.task).revision(models, request)
