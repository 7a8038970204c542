"""Model profiles: everything a worker loads, named once.

A profile says where each pipeline's weights come from (a local folder under the models
directory or a Hugging Face repository at a pinned revision) and the generation defaults
and limits that go with those weights. Both kinds load through the same
`from_pretrained` code (see `loading.py`): `StableDiffusionPipeline` /
`StableDiffusionInpaintPipeline` for the SD 1.5 architecture, `StableDiffusionXLPipeline` /
`StableDiffusionXLInpaintPipeline` for SDXL, and `ControlNetModel` for a ControlNet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# The tiny models' folder names under the models directory. They are built by
# services/worker/testing/tiny_models.py, which the running worker does not import: only
# the names and the manifest that marks a complete build are needed here.
TINY_SD15_DIRNAME = "tiny-sd15"
TINY_SD15_INPAINTING_DIRNAME = "tiny-sd15-inpainting"
TINY_SD15_CONTROLNET_DIRNAME = "tiny-sd15-controlnet"
TINY_SDXL_DIRNAME = "tiny-sdxl"
TINY_SDXL_INPAINTING_DIRNAME = "tiny-sdxl-inpainting"
TINY_SDXL_CONTROLNET_DIRNAME = "tiny-sdxl-controlnet"
# Beyond CLIP: a tiny Llama-architecture LLM with its tokenizer, and an (untrained) encoder
# checkpoint for it and the tiny SD 1.5 UNet: mapping network and RepAdapters.
TINY_LLAMA_DIRNAME = "tiny-llama"
TINY_BEYOND_CLIP_ENCODER_DIRNAME = "tiny-beyond-clip-encoder"
# The file that makes a folder a Beyond CLIP encoder checkpoint (beyond_clip/checkpoint.py).
BEYOND_CLIP_CONFIG_NAME = "beyond_clip.json"
# The toy models' folder names: trained on the toy world (toyworld/, training/) and
# committed as fp16 weights, installed under the models directory by copying
# (services/worker/testing/tiny_models.py `install_toy`).
TOY_SD15_DIRNAME = "toy-sd15"
TOY_SD15_INPAINTING_DIRNAME = "toy-sd15-inpainting"
TOY_SD15_CONTROLNET_DIRNAME = "toy-sd15-controlnet"
# Written last: its presence marks a complete build; it records the build's content hash.
MANIFEST_NAME = "llmga_tiny_manifest.json"
# Bump when the architecture or the build changes, so older builds are replaced. (Adding a
# new model is a new folder, not a new format: existing builds stay valid.)
BUILD_FORMAT = 1


@dataclass(frozen=True)
class ModelSource:
    """Where one pipeline's weights come from."""

    # A Hugging Face repository id, or for `local` sources a folder name under models_dir.
    name: str
    local: bool = False
    # Hub revision (branch, tag or commit sha). Production deployments pin a commit sha
    # (LLMGA_WORKER_MODEL_REVISION) so every recorded image can be reproduced.
    revision: str | None = None

    def path_or_id(self, models_dir: Path) -> str:
        """What `from_pretrained` is given: a local path or a hub repository id."""
        return str(models_dir / self.name) if self.local else self.name


@dataclass(frozen=True)
class LlmEncoderSources:
    """Beyond CLIP text conditioning: an LLM whose last hidden states, through a trained
    mapping network, replace CLIP's features (services/worker/beyond_clip/)."""

    llm: ModelSource
    # The trained mapping and RepAdapters (beyond_clip/checkpoint.py layout). None: the
    # worker setting LLMGA_WORKER_BEYOND_CLIP_WEIGHTS must name one; it also overrides this.
    weights: ModelSource | None


@dataclass(frozen=True)
class ModelProfile:
    """A set of models and their generation defaults and limits."""

    name: str
    # Which diffusers pipeline classes load the sources (loading.py): SD 1.5 (one CLIP text
    # encoder) or SDXL (two, plus the pooled embedding and size conditioning).
    architecture: Literal["sd15", "sdxl"]
    text_to_image: ModelSource
    # The inpainting/outpainting pipeline (a 9-channel inpainting UNet of the same
    # architecture); None: the profile serves neither task.
    inpainting: ModelSource | None
    width: int
    height: int
    steps: int
    guidance_scale: float
    max_side: int = 2048
    max_steps: int = 150
    max_images: int = 8
    # Inpaint/outpaint default: the whole noise schedule (the masked region starts from pure
    # noise), as diffusers' StableDiffusionInpaintPipeline for SD 1.5 inpainting.
    inpaint_strength: float = 1.0
    # Instruction editing: the method an edit without one runs (DiffEdit: exact background
    # and reconstruction, faster; benchmarks/edit_comparison.py, docs/worker.md "Editing"),
    # and the VAE it encodes and decodes with; None: the text-to-image pipeline's.
    edit_method: Literal["p2p", "diffedit"] = "diffedit"
    edit_vae: ModelSource | None = None
    # Inpaint/outpaint default steps; None: `steps`.
    inpaint_steps: int | None = None
    # A canny ControlNet for the text-to-image UNet (TASK_CONTROLNET); None: the profile
    # serves no ControlNet job.
    controlnet: ModelSource | None = None
    # How strongly the ControlNet's residuals steer the UNet when a request leaves it unset.
    controlnet_conditioning_scale: float = 1.0
    # Text conditioning by an LLM instead of the pipeline's CLIP text encoder (Beyond CLIP;
    # text-to-image only); None: CLIP, as the checkpoint was trained.
    llm_encoder: LlmEncoderSources | None = None


PROFILES: dict[str, ModelProfile] = {
    # Random-weight SD 1.5-architecture models built by `python -m
    # services.worker.testing.tiny_models`: the real code path end to end on CPU in about
    # a second per image (docs/worker.md).
    "tiny": ModelProfile(
        name="tiny",
        architecture="sd15",
        text_to_image=ModelSource(TINY_SD15_DIRNAME, local=True),
        inpainting=ModelSource(TINY_SD15_INPAINTING_DIRNAME, local=True),
        controlnet=ModelSource(TINY_SD15_CONTROLNET_DIRNAME, local=True),
        width=256,
        height=256,
        steps=20,
        guidance_scale=7.5,
        max_side=1024,
    ),
    # SD 1.5-architecture models trained on the toy world's 64 x 64 scenes of coloured
    # shapes (docs/toy-world.md), committed and installed locally like the tiny models.
    # They draw the asked colours at the asked places (shapes less reliably: measured
    # there); `make run` serves this profile.
    "toy": ModelProfile(
        name="toy",
        architecture="sd15",
        text_to_image=ModelSource(TOY_SD15_DIRNAME, local=True),
        inpainting=ModelSource(TOY_SD15_INPAINTING_DIRNAME, local=True),
        controlnet=ModelSource(TOY_SD15_CONTROLNET_DIRNAME, local=True),
        width=64,
        height=64,
        steps=25,
        guidance_scale=4.0,
        max_side=512,
        # Measured on these trained models (make eval, 100 edits): prompt-to-prompt changes
        # the asked attribute in 77 %, DiffEdit in 7 % (it keeps nearly everything,
        # outside L1 0.001 vs 0.026): docs/toy-world.md, "Editing".
        edit_method="p2p",
    ),
    # Random-weight SDXL-architecture models (two text encoders, "text_time" UNet) built by
    # testing/tiny_models.py, with SDXL's guidance and inpainting defaults at the tiny size
    # and steps.
    "tiny-sdxl": ModelProfile(
        name="tiny-sdxl",
        architecture="sdxl",
        text_to_image=ModelSource(TINY_SDXL_DIRNAME, local=True),
        inpainting=ModelSource(TINY_SDXL_INPAINTING_DIRNAME, local=True),
        controlnet=ModelSource(TINY_SDXL_CONTROLNET_DIRNAME, local=True),
        width=256,
        height=256,
        steps=20,
        guidance_scale=5.0,
        max_side=1024,
        inpaint_steps=12,  # SDXL's 30 of 50, scaled to the tiny profile's 20
        inpaint_strength=0.8,
        controlnet_conditioning_scale=0.5,
    ),
    # LLMGA's fine-tuned SD 1.5 at the reference defaults (512², 50 steps, CFG 7.5).
    "sd15": ModelProfile(
        name="sd15",
        architecture="sd15",
        text_to_image=ModelSource("binxia/llmga-sd15-t2i-v2", revision="main"),
        inpainting=ModelSource("binxia/llmga-sd15-inpainting-v2", revision="main"),
        edit_vae=ModelSource("stabilityai/sd-vae-ft-mse", revision="main"),
        controlnet=ModelSource("lllyasviel/sd-controlnet-canny", revision="main"),
        width=512,
        height=512,
        steps=50,
        guidance_scale=7.5,
    ),
    # LLMGA's fine-tuned SDXL at the reference defaults (1024², 50 steps, CFG 5.0; inpaint
    # 30 steps at strength 0.8). ControlNet scale 0.5: the checkpoint's model card value.
    "sdxl": ModelProfile(
        name="sdxl",
        architecture="sdxl",
        text_to_image=ModelSource("binxia/llmga-sdxl-t2i", revision="main"),
        inpainting=ModelSource("binxia/llmga-sdxl-inpainting-v2", revision="main"),
        controlnet=ModelSource("diffusers/controlnet-canny-sdxl-1.0", revision="main"),
        width=1024,
        height=1024,
        steps=50,
        guidance_scale=5.0,
        inpaint_steps=30,
        inpaint_strength=0.8,
        controlnet_conditioning_scale=0.5,
    ),
    # Beyond CLIP on tiny models: the tiny SD 1.5 UNet, VAE and scheduler conditioned by a
    # tiny Llama through the mapping network (text-to-image only). The encoder checkpoint
    # built with it is untrained; the training commands write real ones (docs/beyond-clip.md).
    "tiny-beyond-clip": ModelProfile(
        name="tiny-beyond-clip",
        architecture="sd15",
        text_to_image=ModelSource(TINY_SD15_DIRNAME, local=True),
        inpainting=None,
        llm_encoder=LlmEncoderSources(
            llm=ModelSource(TINY_LLAMA_DIRNAME, local=True),
            weights=ModelSource(TINY_BEYOND_CLIP_ENCODER_DIRNAME, local=True),
        ),
        width=256,
        height=256,
        steps=20,
        guidance_scale=7.5,
        max_side=1024,
    ),
    # The paper's setting: LLaMA-2-chat-7B (4096-d hidden states) -> mapping -> SD v1.4's
    # 768-d cross-attention, 512². The trained mapping/adapter checkpoint is not published:
    # train it (docs/beyond-clip.md) and point LLMGA_WORKER_BEYOND_CLIP_WEIGHTS at it.
    "beyond-clip": ModelProfile(
        name="beyond-clip",
        architecture="sd15",
        text_to_image=ModelSource("CompVis/stable-diffusion-v1-4", revision="main"),
        inpainting=None,
        llm_encoder=LlmEncoderSources(
            llm=ModelSource("meta-llama/Llama-2-7b-chat-hf", revision="main"), weights=None
        ),
        width=512,
        height=512,
        steps=50,
        guidance_scale=7.5,
    ),
}


def local_sources(profile: ModelProfile) -> list[ModelSource]:
    """The profile's sources that are built locally (tiny models), not fetched."""
    sources = [profile.text_to_image, profile.inpainting, profile.controlnet]
    if profile.llm_encoder is not None:
        sources += [profile.llm_encoder.llm, profile.llm_encoder.weights]
    return [source for source in sources if source is not None and source.local]


def get_profile(name: str) -> ModelProfile:
    """The profile called `name`; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; known: {sorted(PROFILES)}") from None


def read_manifest(directory: Path) -> dict[str, object] | None:
    """The manifest of a complete tiny build of the current format in `directory`, or None."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != BUILD_FORMAT:
        return None
    return manifest


def tiny_revision(directory: Path) -> str:
    """The revision string recorded in job records for a local build: its kind ("tiny", or
    "toy" for the trained toy models) and content hash."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"no complete tiny model build in {directory}")
    return f"{manifest.get('kind', 'tiny')}-{str(manifest['sha256'])[:12]}"
