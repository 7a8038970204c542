"""Text-to-image: one `GenerationRequest` run on a loaded SD 1.5 or SDXL pipeline.

Reads top to bottom like a diffusers pipeline: check the inputs and resolve the profile's
defaults, encode the prompts (without truncation, prompt_encoding.py), denoise all images
of the job together (one batch, pipelines/batching.py) and decode. Image i of a job uses
seed + i through its own generator, so it starts from exactly the noise of a one-image job
with that seed and ends as that job's image, up to the rounding of a larger batch.
`run_text_to_image_batch` denoises the images of several compatible jobs together the
same way. The steps shared with the other tasks (seeds, encoding, progress, decoding) are
in common.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)

from services.common.contract import GenerationRequest
from services.worker.pipelines.batching import (
    BatchMember,
    DenoisingBatch,
    equal_shape_groups,
    finished,
)
from services.worker.pipelines.common import (
    GenerationResult,
    ProgressCallback,
    ResolvedParams,
    check_side,
    decode_latents,
    draw_seed,
    encode_prompts,
    resolve_sampling,
)
from services.worker.profiles import ModelProfile
from services.worker.prompt_encoding import TextConditioner


def resolve_params(
    request: GenerationRequest,
    profile: ModelProfile,
    draw: Callable[[], int] = draw_seed,
) -> ResolvedParams:
    """Check `request` and fill in the profile's defaults (0 or unset means the default).

    Raises ValueError with a message fit for the job record when the request is invalid.
    """
    width = request.width or profile.width
    height = request.height or profile.height
    check_side("width", width, profile)
    check_side("height", height, profile)
    return resolve_sampling(request, profile, width, height, draw)


def run_text_to_image(
    pipeline: StableDiffusionPipeline | StableDiffusionXLPipeline,
    params: ResolvedParams,
    on_progress: ProgressCallback | None = None,
    conditioning: Mapping[str, Any] | None = None,
    text_conditioner: TextConditioner | None = None,
) -> GenerationResult:
    """Generate `params.num_images` images with `pipeline` (already loaded and on its device),
    all of them denoised together as one batch.

    `on_progress(done, total)` is called after every denoising step of every image; an
    exception it raises stops the job there and propagates to the caller. `conditioning`:
    more keyword arguments of every denoising call, from tasks that steer text-to-image
    (ControlNet's control image and scale, controlnet.py). `text_conditioner`: the
    profile's prompt encoder when it is not the pipeline's CLIP (Beyond CLIP's LLM).
    """
    (outcome,) = run_text_to_image_batch(
        pipeline, [BatchMember(params, on_progress)], conditioning, text_conditioner
    )
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@torch.no_grad()
def run_text_to_image_batch(
    pipeline: StableDiffusionPipeline | StableDiffusionXLPipeline,
    members: Sequence[BatchMember],
    conditioning: Mapping[str, Any] | None = None,
    text_conditioner: TextConditioner | None = None,
) -> list[GenerationResult | BaseException]:
    """Generate the images of several jobs denoised together (pipelines/batching.py): one
    outcome per member, in order: its result, or the exception that stopped it (its
    progress callback's). The members share size, steps and guidance scale (the batch
    rule, task_table.py); their prompts, seeds and image counts are their own.
    `text_conditioner`: the profile's prompt encoder when it is not the pipeline's CLIP.
    """
    first = members[0].params
    outcomes: list[GenerationResult | BaseException | None] = [None] * len(members)

    # Step 1: encode each job's prompts once for all its images, without truncation.
    encoded = [encode_prompts(pipeline, member.params, text_conditioner) for member in members]

    # Prompts of different lengths cannot share a tensor: one pipeline call per length.
    for group in equal_shape_groups([encoding for encoding, _ in encoded]):
        batch = DenoisingBatch(
            pipeline, [members[i] for i in group], [encoded[i][0] for i in group]
        )

        # Step 2: denoise every image of the group together, reporting every step.
        latents = batch.denoise(
            pipeline,
            height=first.height,
            width=first.width,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance_scale,
            **(conditioning or {}),
        )
        for index, error in batch.stopped.items():
            outcomes[group[index]] = error

        # Step 3: decode each job's latents to images, as the stock pipeline does.
        for index, rows in batch.live_rows(latents) if latents is not None else []:
            member = batch.members[index]
            started = time.perf_counter()
            images = decode_latents(pipeline, rows, batch.member_generators(index)[0])
            encoding, encode_s = encoded[group[index]]
            outcomes[group[index]] = GenerationResult(
                images=images,
                seeds=member.params.seeds,
                params=member.params,
                prompt_tokens=encoding.prompt_tokens,
                chunks=encoding.chunks,
                encode_s=encode_s,
                denoise_s=batch.denoise_s,
                decode_s=time.perf_counter() - started,
                batch_size=batch.size,
            )
    return finished(outcomes)
