"""Loading a model profile onto a device, once per worker process."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from diffusers import AutoencoderKL, ControlNetModel
from diffusers.pipelines.controlnet.pipeline_controlnet import StableDiffusionControlNetPipeline
from diffusers.pipelines.controlnet.pipeline_controlnet_sd_xl import (
    StableDiffusionXLControlNetPipeline,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_inpaint import (
    StableDiffusionXLInpaintPipeline,
)

from services.worker.beyond_clip.checkpoint import checkpoint_revision, load_text_encoder
from services.worker.diffrir.restorer import DiffRIRRestorer
from services.worker.diffrir.tiling import Tiling
from services.worker.metrics import MODEL_LOAD_SECONDS
from services.worker.optimisations import Optimisations, optimise_pipelines
from services.worker.profiles import LlmEncoderSources, ModelProfile, ModelSource, tiny_revision
from services.worker.prompt_encoding import TextConditioner

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# The pipelines loaded besides text-to-image, which is always loaded (the others share its
# components). The task table (task_table.py) says which tasks need which.
Component = Literal["inpainting", "controlnet", "editing"]
# How a job refused for a missing component names it: "profile <name> has no ...".
MISSING_COMPONENT: dict[Component, str] = {
    "inpainting": "inpainting model loaded",
    "controlnet": "ControlNet loaded",
    "editing": "CLIP-conditioned SD 1.5 editing pipeline",
}


@dataclass(frozen=True)
class PipelineClasses:
    """The diffusers classes that load and run one architecture's checkpoints."""

    text_to_image: type[DiffusionPipeline]
    inpainting: type[DiffusionPipeline]
    # Built from the loaded text-to-image components plus a `ControlNetModel`.
    controlnet: type[StableDiffusionControlNetPipeline] | type[StableDiffusionXLControlNetPipeline]


PIPELINE_CLASSES = {
    "sd15": PipelineClasses(
        StableDiffusionPipeline, StableDiffusionInpaintPipeline, StableDiffusionControlNetPipeline
    ),
    "sdxl": PipelineClasses(
        StableDiffusionXLPipeline,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLControlNetPipeline,
    ),
}


@dataclass(frozen=True)
class LoadedModels:
    """A profile's pipelines on their device, with what job records say about them."""

    profile: ModelProfile
    text_to_image: StableDiffusionPipeline | StableDiffusionXLPipeline
    # Recorded in every job: a hub revision, or `tiny-<content hash>` for local tiny builds.
    revision: str
    device: torch.device
    dtype: torch.dtype
    # The inpainting/outpainting pipeline and its revision; None when not loaded (the
    # profile has none, or the caller only needs text-to-image).
    inpainting: StableDiffusionInpaintPipeline | StableDiffusionXLInpaintPipeline | None = None
    inpainting_revision: str = ""
    # ControlNet jobs: the text-to-image components (the same objects, no second copy)
    # plus the profile's ControlNet; None when not loaded.
    controlnet: StableDiffusionControlNetPipeline | StableDiffusionXLControlNetPipeline | None = (
        None
    )
    controlnet_revision: str = ""
    # DiffRIR, run after inpaint/outpaint and by restore jobs; None: no weights configured
    # (the colour fallback restores instead).
    restorer: DiffRIRRestorer | None = None
    # Edit jobs: the text-to-image components with the profile's editing VAE, if it has one.
    editing: StableDiffusionPipeline | None = None
    editing_revision: str = ""
    # LLM-conditioned profiles (Beyond CLIP): encodes text-to-image prompts instead of the
    # pipeline's CLIP, which is then not loaded. None: CLIP.
    text_conditioner: TextConditioner | None = None

    def has(self, component: Component) -> bool:
        """Whether `component` is loaded."""
        return getattr(self, component) is not None


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
    without_text_encoder: bool = False,
) -> tuple[DiffusionPipeline, str]:
    """Load one pipeline: the same `from_pretrained` call for a local tiny build and a hub
    checkpoint, safety checker off (and with `without_text_encoder`, no CLIP text encoder
    and tokenizer: another text conditioner replaces them). Returns it with the revision
    job records carry."""
    path_or_id = source.path_or_id(models_dir)
    revision = (revision_override or source.revision) if not source.local else None
    # SD 1.5 pipelines have a safety checker to turn off; SDXL's have none to pass.
    safety = {"safety_checker": None, "requires_safety_checker": False}
    if "safety_checker" not in inspect.signature(pipeline_class).parameters:
        safety = {}
    # None for a component: from_pretrained skips loading it.
    text_encoder = {"text_encoder": None, "tokenizer": None} if without_text_encoder else {}
    logger.info(
        "loading %s %s (revision %s) as %s on %s",
        pipeline_class.__name__, path_or_id, revision, dtype, device,
    )  # fmt: skip
    started = time.perf_counter()
    pipeline = pipeline_class.from_pretrained(
        path_or_id,
        revision=revision,
        dtype=dtype,  # diffusers 0.42 name; `torch_dtype` is deprecated
        **safety,
        **text_encoder,
    )
    pipeline = pipeline.to(device)
    # Progress goes to the job record, not to a terminal progress bar.
    pipeline.set_progress_bar_config(disable=True)
    MODEL_LOAD_SECONDS.labels(pipeline_class.__name__).set(time.perf_counter() - started)
    return pipeline, recorded_revision(source, path_or_id, revision)


def load_vae(
    source: ModelSource, models_dir: Path, device: torch.device, dtype: torch.dtype
) -> AutoencoderKL:
    """A VAE on its own (the editing VAE), from a local folder or a hub repository."""
    vae = AutoencoderKL.from_pretrained(
        source.path_or_id(models_dir),
        revision=None if source.local else source.revision,
        dtype=dtype,
    )
    return vae.to(device)


def load_models(
    profile: ModelProfile,
    models_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
    revision_override: str = "",
    components: Collection[Component] = (),
    diffrir_weights: Path | None = None,
    diffrir_tiling: Tiling | None = None,
    optimisations: Optimisations | None = None,
    beyond_clip_weights: Path | None = None,
) -> LoadedModels:
    """Load the profile's text-to-image pipeline and those of `components` the profile has
    (the worker asks for what its tasks need, `task_table.models_needed`; text-to-image
    benchmarks ask for none): its inpainting pipeline, its ControlNet combined with the
    text-to-image components, the editing pipeline (SD 1.5 only). The pipeline classes
    follow the profile's architecture (`PIPELINE_CLASSES`).

    `revision_override` pins the text-to-image repository; the inpainting checkpoint is a
    different repository and keeps the profile's own pin. With `diffrir_weights`, the
    DiffRIR restorer is loaded too (tiled as `diffrir_tiling`, default `Tiling()`).
    `optimisations` (optimisations.py) are applied to every diffusion pipeline loaded.

    An LLM-conditioned profile (`profile.llm_encoder`) loads its LLM text encoder with the
    mapping and adapters of `beyond_clip_weights` (default: the profile's own) instead of
    the pipeline's CLIP, and serves text-to-image only: CLIP-conditioned components
    (inpainting, ControlNet, editing) are not loaded, so their jobs are refused.
    """
    classes = PIPELINE_CLASSES[profile.architecture]
    llm_encoder = profile.llm_encoder
    text_to_image, revision = load_pipeline(
        classes.text_to_image,
        profile.text_to_image,
        models_dir,
        device,
        dtype,
        revision_override,
        without_text_encoder=llm_encoder is not None,
    )
    text_conditioner: TextConditioner | None = None
    if llm_encoder is not None:
        components = ()  # the CLIP-conditioned pipelines: none (docstring)
        text_conditioner, encoder_revision = load_llm_conditioner(
            llm_encoder, models_dir, device, dtype, beyond_clip_weights
        )
        revision = f"{revision}+{encoder_revision}"
    inpaint_pipeline, inpainting_revision = None, ""
    if "inpainting" in components and profile.inpainting is not None:
        inpaint_pipeline, inpainting_revision = load_pipeline(
            classes.inpainting, profile.inpainting, models_dir, device, dtype
        )
    controlnet_pipeline, controlnet_revision = None, ""
    if "controlnet" in components and profile.controlnet is not None:
        controlnet_pipeline, controlnet_revision = load_controlnet_pipeline(
            classes.controlnet, text_to_image, profile.controlnet, models_dir, device, dtype
        )
    # Edits run on SD 1.5 components (pipelines/editing.py), with the profile's editing VAE
    # if it names one: the same weights in a second pipeline object, only the VAE is new.
    editing = text_to_image if "editing" in components and profile.architecture == "sd15" else None
    editing_revision = ""
    if editing is not None and profile.edit_vae is not None:
        vae_source = profile.edit_vae
        vae_revision = recorded_revision(
            vae_source, vae_source.path_or_id(models_dir), vae_source.revision
        )
        editing_revision = f"{revision}+vae:{vae_revision}"
        editing = StableDiffusionPipeline(
            **{
                **text_to_image.components,
                "vae": load_vae(profile.edit_vae, models_dir, device, dtype),
            },
            requires_safety_checker=False,
        )
        editing.set_progress_bar_config(disable=True)
    if optimisations is not None:
        loaded = [text_to_image, inpaint_pipeline, controlnet_pipeline, editing]
        optimise_pipelines([p for p in loaded if p is not None], optimisations)
    return LoadedModels(
        profile=profile,
        text_to_image=text_to_image,  # type: ignore[arg-type]
        editing=editing,  # type: ignore[arg-type]
        editing_revision=editing_revision,
        revision=revision,
        device=device,
        dtype=dtype,
        inpainting=inpaint_pipeline,  # type: ignore[arg-type]
        inpainting_revision=inpainting_revision,
        controlnet=controlnet_pipeline,  # type: ignore[arg-type]
        controlnet_revision=controlnet_revision,
        restorer=load_restorer(diffrir_weights, device, diffrir_tiling or Tiling()),
        text_conditioner=text_conditioner,
    )


def load_llm_conditioner(
    sources: LlmEncoderSources,
    models_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
    weights_override: Path | None = None,
) -> tuple[TextConditioner, str]:
    """The LLM text encoder of an LLM-conditioned profile, adapters merged (beyond_clip/),
    with the revision job records carry: the LLM's and the mapping checkpoint's."""
    if weights_override is not None:
        weights_dir = weights_override
    elif sources.weights is not None:
        weights_dir = Path(sources.weights.path_or_id(models_dir))
    else:
        raise ValueError(
            "this profile's mapping network and adapters are not published: train them "
            "(docs/beyond-clip.md) and set LLMGA_WORKER_BEYOND_CLIP_WEIGHTS to the checkpoint"
        )
    llm_path = sources.llm.path_or_id(models_dir)
    llm_revision = sources.llm.revision if not sources.llm.local else None
    logger.info("loading LLM text encoder %s with %s as %s", llm_path, weights_dir, dtype)
    started = time.perf_counter()
    encoder = load_text_encoder(llm_path, weights_dir, device, dtype, llm_revision)
    MODEL_LOAD_SECONDS.labels("LlmTextEncoder").set(time.perf_counter() - started)
    llm = recorded_revision(sources.llm, llm_path, llm_revision)
    return encoder.encode_prompts, f"llm:{llm}+{checkpoint_revision(weights_dir)}"


def load_controlnet_pipeline(
    pipeline_class: type[StableDiffusionControlNetPipeline]
    | type[StableDiffusionXLControlNetPipeline],
    text_to_image: DiffusionPipeline,
    source: ModelSource,
    models_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[DiffusionPipeline, str]:
    """Load the `ControlNetModel` of `source` (the same `from_pretrained` call for a tiny
    build and a hub checkpoint) and build `pipeline_class` around the already loaded
    text-to-image components: the UNet, VAE and text encoders are shared, not copied.
    Returns it with the ControlNet's revision."""
    path_or_id = source.path_or_id(models_dir)
    revision = source.revision if not source.local else None
    logger.info("loading ControlNetModel %s (revision %s) as %s", path_or_id, revision, dtype)
    started = time.perf_counter()
    controlnet = ControlNetModel.from_pretrained(path_or_id, revision=revision, dtype=dtype)
    # Options that live in the text-to-image pipeline's config, not among its components.
    options = {
        name: text_to_image.config[name]
        for name in ("requires_safety_checker", "force_zeros_for_empty_prompt")
        if name in text_to_image.config
    }
    pipeline = pipeline_class(
        **text_to_image.components, controlnet=controlnet.to(device), **options
    )
    pipeline.set_progress_bar_config(disable=True)
    MODEL_LOAD_SECONDS.labels(pipeline_class.__name__).set(time.perf_counter() - started)
    return pipeline, recorded_revision(source, path_or_id, revision)


def load_restorer(
    weights: Path | None, device: torch.device, tiling: Tiling
) -> DiffRIRRestorer | None:
    """The DiffRIR restorer with `weights` on `device`; None without weights."""
    if weights is None:
        return None
    started = time.perf_counter()
    restorer = DiffRIRRestorer.load(weights, device, tiling)
    MODEL_LOAD_SECONDS.labels("DiffRIR").set(time.perf_counter() - started)
    return restorer
