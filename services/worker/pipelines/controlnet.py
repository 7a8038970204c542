"""ControlNet (canny): text-to-image whose every denoising step is steered by a control
image's edges, on the text-to-image components plus the profile's ControlNet.

Reads top to bottom like a diffusers pipeline:

0. check the inputs and resolve the profile's defaults (`resolve_controlnet_params`): the
   output size is the request's width/height or the profile's default, as text-to-image;
   the control source (`input_image_ids[0]`) is resized to it and, unless `preprocessed`,
   turned into its canny edges with the request's thresholds (control_images.py); the
   conditioning scale is the request's or the profile's, within [0, 2];
1. encode the prompts once, without truncation (common.py, as text-to-image);
2. per image: denoise from the noise of seed + i with the control image and scale,
   reporting every step;
3. decode with the VAE.

Steps 1 to 3 are text-to-image's (`run_text_to_image`) with the control image passed to
every step, so seeds, progress and timings mean the same in both tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from diffusers.pipelines.controlnet.pipeline_controlnet import StableDiffusionControlNetPipeline
from diffusers.pipelines.controlnet.pipeline_controlnet_sd_xl import (
    StableDiffusionXLControlNetPipeline,
)
from PIL import Image

from services.common.contract import ControlType, GenerationRequest
from services.common.image_rules import check_conditioning_scale, resolve_canny_thresholds
from services.worker.control_images import control_image
from services.worker.pipelines.common import (
    GenerationResult,
    ProgressCallback,
    ResolvedParams,
    draw_seed,
)
from services.worker.pipelines.text_to_image import resolve_params, run_text_to_image
from services.worker.profiles import ModelProfile

CANNY_TYPES = (ControlType.CONTROL_TYPE_UNSPECIFIED, ControlType.CONTROL_TYPE_CANNY)


@dataclass(frozen=True)
class ControlNetParams(ResolvedParams):
    """A ControlNet job: text-to-image's parameters plus what steers it."""

    # RGB, of the output's size: the edge map every denoising step sees.
    control_image: Image.Image
    conditioning_scale: float


def resolve_controlnet_params(
    request: GenerationRequest,
    profile: ModelProfile,
    source: Image.Image,
    draw: Callable[[], int] = draw_seed,
) -> ControlNetParams:
    """Check a ControlNet request whose control source is `source` and fill in the
    profile's defaults; the control image is made here, before anything runs.

    Raises ValueError with a message fit for the job record when the request is invalid.
    """
    control = request.control
    if control.type not in CANNY_TYPES:
        raise ValueError(f"control type {control.type} is not served; only canny is")
    sampling = resolve_params(request, profile, draw)
    scale = (
        control.conditioning_scale
        if control.HasField("conditioning_scale")
        else profile.controlnet_conditioning_scale
    )
    scale = check_conditioning_scale(scale)
    thresholds = resolve_canny_thresholds(control.low_threshold, control.high_threshold)
    image = control_image(
        source, (sampling.width, sampling.height), control.preprocessed, thresholds
    )
    return ControlNetParams(**vars(sampling), control_image=image, conditioning_scale=scale)


def run_controlnet(
    pipeline: StableDiffusionControlNetPipeline | StableDiffusionXLControlNetPipeline,
    params: ControlNetParams,
    on_progress: ProgressCallback | None = None,
) -> GenerationResult:
    """Generate `params.num_images` images steered by `params.control_image`.

    `on_progress(done, total)` is called after every denoising step of every image; an
    exception it raises stops the job there and propagates to the caller.
    """
    return run_text_to_image(
        pipeline,  # type: ignore[arg-type]
        params,
        on_progress,
        conditioning={
            "image": params.control_image,
            "controlnet_conditioning_scale": params.conditioning_scale,
        },
    )
