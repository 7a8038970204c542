"""Loading a model profile onto a device, once per worker process."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)

from services.common.contract import Task
from services.worker.metrics import MODEL_LOAD_SECONDS
from services.worker.profiles import ModelProfile, ModelSource
from services.worker.tiny_models import tiny_revision

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class LoadedModels:
    """A profile's pipelines on their device, with what job records say about them."""

    profile: ModelProfile
    text_to_image: StableDiffusionPipeline
    # Recorded in every job: a hub revision, or `tiny-<content hash>` for local tiny builds.
    revision: str
    device: torch.device
    dtype: torch.dtype
    # The inpainting/outpainting pipeline and its revision; None when not loaded (the
    # profile has none, or the caller only needs text-to-image).
    inpainting: StableDiffusionInpaintPipeline | None = None
    inpainting_revision: str = ""

    def revision_for(self, task: int) -> str:
        """The revision a job of `task` records: that of the pipeline that runs it."""
        if task in (Task.TASK_INPAINT, Task.TASK_OUTPAINT):
            return self.inpainting_revision
        return self.revision


def resolve_device(name: str) -> torch.device:
    """`auto` is cuda when a GPU is visible, else cpu; anything else is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is float16 on cuda (SD 1.5's usual serving precision) and float32 on cpu,
    where half precision is slow or unsupported."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[name]


def recorded_revision(source: ModelSource, path_or_id: str, revision: str | None) -> str:
    """The revision string job records carry for `source`."""
    if not source.local:
        return revision or "main"
    try:
        return tiny_revision(Path(path_or_id))
    except FileNotFoundError:
        return "local"  # a local folder that is not a tiny build: no content hash to give


def load_pipeline(
    pipeline_class: type[DiffusionPipeline],
    source: ModelSource,
    models_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
    revision_override: str = "",
) -> tuple[DiffusionPipeline, str]:
    """Load one pipeline: the same `from_pretrained` call for a local tiny build and a hub
    checkpoint, safety checker off. Returns it with the revision job records carry."""
    path_or_id = source.path_or_id(models_dir)
    revision = (revision_override or source.revision) if not source.local else None
    logger.info(
        "loading %s %s (revision %s) as %s on %s",
        pipeline_class.__name__, path_or_id, revision, dtype, device,
    )  # fmt: skip
    started = time.perf_counter()
    pipeline = pipeline_class.from_pretrained(
        path_or_id,
        revision=revision,
        dtype=dtype,  # diffusers 0.42 name; `torch_dtype` is deprecated
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipeline = pipeline.to(device)
    # Progress goes to the job record, not to a terminal progress bar.
    pipeline.set_progress_bar_config(disable=True)
    MODEL_LOAD_SECONDS.labels(pipeline_class.__name__).set(time.perf_counter() - started)
    return pipeline, recorded_revision(source, path_or_id, revision)


def load_models(
    profile: ModelProfile,
    models_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
    revision_override: str = "",
    inpainting: bool = False,
) -> LoadedModels:
    """Load the profile's text-to-image pipeline and, with `inpainting` (the worker does;
    text-to-image benchmarks need not), its inpainting pipeline.

    `revision_override` pins the text-to-image repository; the inpainting checkpoint is a
    different repository and keeps the profile's own pin.
    """
    text_to_image, revision = load_pipeline(
        StableDiffusionPipeline, profile.text_to_image, models_dir, device, dtype, revision_override
    )
    inpaint_pipeline, inpainting_revision = None, ""
    if inpainting and profile.inpainting is not None:
        inpaint_pipeline, inpainting_revision = load_pipeline(
            StableDiffusionInpaintPipeline, profile.inpainting, models_dir, device, dtype
        )
    return LoadedModels(
        profile=profile,
        text_to_image=text_to_image,  # type: ignore[arg-type]
        revision=revision,
        device=device,
        dtype=dtype,
        inpainting=inpaint_pipeline,  # type: ignore[arg-type]
        inpainting_revision=inpainting_revision,
    )
